"""Decoding through PyAV (its own bundled FFmpeg; no system ffmpeg needed).

Any container, sample rate, channel count, frame rate and resolution. A file
with no audio track or no video track is not an error here: `probe` says
which tracks exist and the decoders return empty arrays for a missing track,
so callers decide (the pipeline marks the modality as length 0).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MediaError

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".mov",
        ".mkv",
        ".avi",
        ".webm",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".flv",
        ".3gp",
        ".ts",
        ".mts",
        ".m2ts",
        ".ogv",
    }
)
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".wma"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS

# A decode that ends this much earlier than its stream's declared duration
# means the file was cut short (an interrupted copy or download). A stream that
# is declared shorter than the container is not cut: `ffmpeg -shortest` and
# editors write an audio track that ends before the video (a note, see
# `track_notes`).
_TRUNCATION_SLACK_S = 0.5
_TRUNCATION_FRACTION = 0.8


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, read from its container header."""

    path: Path
    duration: float  # seconds; 0.0 when the container does not say
    has_audio: bool
    has_video: bool
    sample_rate: int | None  # audio, Hz
    channels: int | None
    frame_rate: float | None  # video, frames per second
    width: int | None
    height: int | None
    audio_duration: float = 0.0  # the audio stream's own declared duration, seconds; 0.0 when unknown
    video_duration: float = 0.0  # the video stream's own declared duration, seconds; 0.0 when unknown

    def track_notes(self) -> list[str]:
        """Facts worth recording about the tracks: one that ends well before the other (not an error)."""
        notes = []
        for what, own in (("audio", self.audio_duration), ("video", self.video_duration)):
            if own > 0 and self.duration > 0 and own < self.duration - _TRUNCATION_SLACK_S:
                notes.append(
                    f"the {what} track ends at {own:.2f} s, {self.duration - own:.2f} s before the clip's end "
                    f"({self.duration:.2f} s); its features stop there"
                )
        return notes


def _open(path: Path):
    """Open a container, turning every way a file can be unreadable into one clear MediaError."""
    import av

    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise MediaError(f"{path}: is a directory, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes); re-copy or re-export the clip")
    try:
        return av.open(str(path))
    except av.error.InvalidDataError:
        if _looks_like_media(path):
            raise MediaError(
                f"{path}: truncated or corrupt media file (its container index is missing); re-copy or re-download it"
            ) from None
        raise MediaError(
            f"{path}: not a media file (FFmpeg cannot read it; is it misnamed?); give a video or audio file"
        ) from None
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: cannot open ({exc.strerror or exc}); re-export it as mp4/h264 or wav") from None


def _looks_like_media(path: Path) -> bool:
    """Whether the first bytes carry a known container signature (so the file is media, but damaged)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide")  # ISO BMFF: mp4, mov, m4a
        or head.startswith((b"\x1a\x45\xdf\xa3", b"RIFF", b"OggS", b"fLaC", b"ID3", b"FLV"))
        or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf1", b"\xff\xf9")  # mp3 / adts frames
    )


def video_stream(container):
    """The first moving-picture video stream, or None: cover art (an attached picture in an mp3/m4a) is not video."""
    import av

    still = av.stream.Disposition.attached_pic
    return next((s for s in container.streams.video if not (s.disposition & still)), None)


def probe(path: Path) -> MediaInfo:
    """Read the container header: duration, which tracks exist, their rates and size."""
    with _open(path) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = video_stream(container)
        if audio is None and video is None:
            raise MediaError(f"{path}: holds neither an audio nor a video track")
        duration = float(container.duration) / 1_000_000 if container.duration else 0.0
        frame_rate = None
        if video is not None:
            rate = video.average_rate or video.base_rate or video.guessed_rate
            frame_rate = float(rate) if rate else None
        return MediaInfo(
            path=Path(path),
            duration=duration,
            has_audio=audio is not None,
            has_video=video is not None,
            sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            channels=audio.codec_context.channels if audio is not None else None,
            frame_rate=frame_rate,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            audio_duration=stream_duration(audio, container) if audio is not None else 0.0,
            video_duration=stream_duration(video, container) if video is not None else 0.0,
        )


def _parse_clock(text: str) -> float:
    """'HH:MM:SS.fraction' (Matroska's per-track DURATION tag) in seconds; 0.0 when it does not parse."""
    m = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*", text)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0


def stream_duration(stream, container) -> float:
    """A stream's OWN declared duration in seconds (mp4/mov track header, Matroska's DURATION tag).

    Falls back to the container's duration when the stream declares none, so
    a cut file is still caught in formats without per-track durations.
    """
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = next((v for k, v in (stream.metadata or {}).items() if k.upper() == "DURATION"), None)
    own = _parse_clock(tag) if tag else 0.0
    if own > 0:
        return own
    return float(container.duration) / 1_000_000 if container.duration else 0.0


def _check_window(start: float | None, end: float | None) -> tuple[float, float]:
    lo = 0.0 if start is None else float(start)
    hi = math.inf if end is None else float(end)
    if lo < 0 or hi <= lo:
        raise MediaError(f"invalid time window [{start}, {end}]: need 0 <= start < end")
    return lo, hi


def _check_truncated(path: Path, declared: float, decoded_end: float, what: str, start: float, end: float) -> None:
    """Raise when a stream stops well before its own declared duration (`stream_duration`)."""
    if declared <= 0 or not math.isinf(end) or start > 0:
        return
    if decoded_end < _TRUNCATION_FRACTION * declared - _TRUNCATION_SLACK_S:
        raise MediaError(
            f"{path}: truncated: {what} stops at {decoded_end:.2f} s of a declared {declared:.2f} s; "
            "re-copy or re-download the file"
        )


def load_audio(
    path: Path, sample_rate: int = 16000, start: float | None = None, end: float | None = None
) -> np.ndarray:
    """Decode the first audio track to mono float32 at `sample_rate`, optionally a [start, end) window in seconds.

    Returns (N,) float32 in [-1, 1]; (0,) when the file has no audio track.
    Channels are averaged (downmix) by FFmpeg's resampler. A window is cut by
    sample index from a decode that starts at 0 (no seek), so it is
    sample-exact and reproducible, which predict's segments rely on.
    """
    import av

    lo, hi = _check_window(start, end)
    with _open(path) as container:
        if not container.streams.audio:
            return np.zeros(0, np.float32)
        stream = container.streams.audio[0]
        declared = stream_duration(stream, container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= hi + 1.0:  # 1 s margin past the window
                    break
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: audio track is corrupt ({exc.strerror or exc}); re-export the file") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)  # (N,)
    _check_truncated(Path(path), declared, len(samples) / sample_rate, "audio", lo, hi)
    a = int(round(lo * sample_rate))
    b = len(samples) if math.isinf(hi) else int(round(hi * sample_rate))
    return np.ascontiguousarray(samples[a:b], dtype=np.float32)


def sample_frames(
    path: Path,
    fps: float,
    start: float | None = None,
    end: float | None = None,
    max_side: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample RGB frames of the first video track (not cover art: `video_stream`) on a fixed grid of `fps` per second.

    The grid is t_k = start + k / fps for every t_k inside the clip (or window);
    each grid point takes the frame on screen at that time (the last frame with
    pts <= t_k), so any source frame rate maps onto the same timeline.
    Frames are downscaled so that their longer side is at most `max_side`.

    Returns (frames (T, H, W, 3) uint8, timestamps (T,) float64 seconds from the
    clip start); T == 0 when there is no video track. A clip with a single
    frame gives T == 1.
    """
    import av

    if fps <= 0:
        raise MediaError(f"fps must be > 0, got {fps}")
    lo, hi = _check_window(start, end)
    step = 1.0 / fps
    frames: list[np.ndarray] = []
    times: list[float] = []
    with _open(path) as container:
        stream = video_stream(container)
        if stream is None:
            return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0, np.float64)
        stream.thread_type = "AUTO"  # frame threads: decoding is the costly part at low fps
        declared = stream_duration(stream, container)
        rate = stream.average_rate or stream.guessed_rate
        frame_dur = 1.0 / float(rate) if rate else 0.04
        origin = None  # time of the first frame: the clip's t = 0
        k = 0  # next grid index to fill
        prev = None  # (time, VideoFrame) of the frame on screen
        last_time = 0.0

        def grid(i: int) -> float:
            return lo + i * step

        def emit(frame, until: float) -> None:
            """Assign `frame` to every grid point before `until`."""
            nonlocal k
            while grid(k) < until and grid(k) < hi:
                frames.append(_to_rgb(frame, max_side))
                times.append(grid(k))
                k += 1

        try:
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else (last_time + frame_dur if prev else 0.0)
                if origin is None:
                    origin = t
                t -= origin
                last_time = t
                if prev is not None:
                    emit(prev[1], t)
                if t >= hi:
                    prev = None
                    break
                prev = (t, frame)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: video track is corrupt ({exc.strerror or exc}); re-export the file") from None
        if prev is not None:  # the last frame stays on screen for one frame duration
            emit(prev[1], prev[0] + frame_dur)
            last_time = prev[0] + frame_dur
    _check_truncated(Path(path), declared, last_time, "video", lo, hi)
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0, np.float64)
    return np.stack(frames), np.asarray(times, np.float64)  # (T, H, W, 3), (T,)


def _to_rgb(frame, max_side: int | None) -> np.ndarray:
    """One decoded frame as (H, W, 3) uint8 as it is displayed: upright, downscaled if larger than max_side.

    A phone stores a portrait clip sideways with a display matrix (FFmpeg's
    "rotate 90"); the frame's `rotation` (degrees counter-clockwise, from that
    side data) says how to turn it, as players and FFmpeg's autorotate do.
    """
    w, h = frame.width, frame.height
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        w2, h2 = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
        rgb = frame.to_ndarray(format="rgb24", width=w2, height=h2)  # (H, W, 3)
    else:
        rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3)
    quarter_turns = int(round(float(getattr(frame, "rotation", 0) or 0) / 90)) % 4  # counter-clockwise
    if quarter_turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter_turns))  # (W, H, 3) for 90 and 270
    return rgb
