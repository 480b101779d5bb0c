"""Errors the extractors package raises on purpose; the CLI shows them as one line."""


class ExtractionError(Exception):
    """A clip or file that cannot be processed; the message names the file and the fix."""


class MediaError(ExtractionError):
    """A file that is empty, not media, truncated, or has no usable track."""


class ModelNotCachedError(ExtractionError):
    """A model (Whisper, py-feat) that is neither a local directory nor in the local cache."""


class BackendUnavailableError(ExtractionError):
    """An optional backend (py-feat, faster-whisper) that is not installed or cannot import here."""


class MissingModalityError(ExtractionError):
    """A readable clip that lacks a modality (no audio track, silence, no face, no text)."""


class InputNotFoundError(ExtractionError, FileNotFoundError):
    """A media file, input folder or label file the user named that does not exist."""
