"""Errors the models package raises on purpose; the CLI shows them as one line."""


class DeepMLFError(Exception):
    """A known failure with a message that names the problem and the fix."""


class ConfigError(DeepMLFError, ValueError):
    """A config value, preset or layer index that cannot work."""


class DatasetError(DeepMLFError, ValueError):
    """A dataset file that is missing, malformed, or of the wrong schema."""


class ModelNotAvailableError(DeepMLFError):
    """A language model that is neither a local directory nor in the local cache."""


class CheckpointError(DeepMLFError):
    """A run directory or checkpoint that is missing or inconsistent."""


class OutputError(DeepMLFError):
    """An output folder or file that cannot be written: in use by another writer, read-only, full, or a file."""


class DiskFullError(OutputError):
    """The device filled up during a write; the previous version of the file or folder stands."""
