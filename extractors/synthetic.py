"""Synthetic media written offline with PyAV: face clips with speech-like audio, and demo corpora.

`deepmlf demo` uses these to show the raw-video path (extract → train →
predict) without any download, and the tests build their clips and bad
inputs from them. The face is scikit-image's `data.astronaut()` (public
domain), moved and zoomed a little each frame so the video is not a still
image; MediaPipe finds it in every frame.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import av
import numpy as np

from .dataset import write_text

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.video.stream import VideoStream

AUDIO_RATE = 16000
FRAME_SIZE = (240, 240)  # (H, W), even numbers for yuv420p


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8, face roughly in rows 20-230, cols 140-330


def face_frames(n: int, size: tuple[int, int] = FRAME_SIZE, faces: int = 1) -> np.ndarray:
    """`n` RGB frames (n, H, W, 3) uint8 of the astronaut's face slowly panning and zooming.

    With `faces=2` a second, smaller copy of the face is pasted in a corner
    (the main face stays the large one).
    """
    import cv2

    img = _astronaut()
    h, w = size
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        phase = i / max(n - 1, 1)
        side = int(330 - 40 * np.sin(np.pi * phase))  # zoom in and out
        top = int(0 + 15 * phase)
        left = int(80 + 30 * np.sin(2 * np.pi * phase))
        crop = img[top : top + side, left : left + side]
        frame = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
        if faces >= 2:
            small = cv2.resize(img[0:330, 80:410], (w // 3, h // 3), interpolation=cv2.INTER_AREA)
            frame[h - h // 3 :, w - w // 3 :] = small
        frames[i] = frame
    return frames


def blank_frames(n: int, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """`n` frames (n, H, W, 3) uint8 of a moving colour gradient: a video with no face."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = (x + 3 * i) % 256
        frames[i, ..., 1] = (y * 2) % 256
        frames[i, ..., 2] = 128
    return frames


def make_audio(seconds: float, kind: str = "tone", rate: int = AUDIO_RATE, seed: int = 0) -> np.ndarray:
    """Mono float32 samples (N,) in [-1, 1]: 'tone' (220 Hz), 'speech' (voiced syllables) or 'silence'."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "tone":
        return (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    if kind == "speech":
        # Speech-like: a gliding f0 with harmonics, gated into ~4 syllables/s, plus breath noise.
        rng = np.random.default_rng(seed)
        f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        voiced = sum((0.6 / k) * np.sin(k * phase) for k in range(1, 8))
        envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 2
        signal = voiced * envelope + 0.02 * rng.standard_normal(n)
        return (0.3 * signal / np.max(np.abs(signal))).astype(np.float32)
    raise ValueError(f"unknown audio kind {kind!r}: use tone, speech or silence")


def write_media(
    path: Path,
    frames: np.ndarray | None,
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    audio_rate: int = AUDIO_RATE,
    channels: int = 1,
    faststart: bool = False,
) -> Path:
    """Write an mp4 (h264 + aac) or audio file with PyAV; either track may be absent.

    faststart puts the mp4 index (moov) at the front, so a cut file still opens.

    frames: (T, H, W, 3) uint8 or None; audio: (N,) float32 mono or None
    (duplicated to `channels` channels).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    # Written under a temporary name (same suffix, so PyAV picks the container) and
    # renamed: an interrupted demo never leaves a half-written clip behind.
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        _encode(tmp, frames, fps, audio, audio_rate, channels, options)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# What ffmpeg picks by default per container (video, audio); others get h264 + 16-bit PCM.
_CODECS = {
    ".mp4": ("libx264", "aac"),
    ".m4a": ("libx264", "aac"),
    ".m4v": ("libx264", "aac"),
    ".mov": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".ts": ("libx264", "aac"),
    ".flv": ("libx264", "aac"),
    ".mpg": ("mpeg2video", "mp2"),
    ".mpeg": ("mpeg2video", "mp2"),
    ".webm": ("libvpx", "libopus"),
}


def _encode(
    path: Path,
    frames: np.ndarray | None,
    fps: float,
    audio: np.ndarray | None,
    audio_rate: int,
    channels: int,
    options: dict,
) -> None:
    with av.open(str(path), "w", options=options) as container:
        # Both streams exist before the first packet is muxed (the header lists them).
        vstream: VideoStream | None = None
        astream: AudioStream | None = None
        video_codec, audio_codec = _CODECS.get(path.suffix.lower(), ("libx264", "pcm_s16le"))
        if frames is not None:
            vstream = cast("VideoStream", container.add_stream(video_codec, rate=Fraction(fps).limit_denominator(1001)))
            vstream.height, vstream.width = frames.shape[1:3]
            vstream.pix_fmt = "yuv420p"
            if video_codec == "libx264":
                vstream.options = {"preset": "ultrafast"}
        if audio is not None:
            astream = cast("AudioStream", container.add_stream(audio_codec, rate=audio_rate))
            astream.layout = "mono" if channels == 1 else "stereo"
        if vstream is not None and frames is not None:
            _encode_video(container, vstream, frames)
        if astream is not None and audio is not None:
            _encode_audio(container, astream, audio, audio_rate, channels)


def _encode_video(container: OutputContainer, stream: VideoStream, frames: np.ndarray) -> None:
    for i, img in enumerate(frames):  # (H, W, 3) uint8 each
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _encode_audio(
    container: OutputContainer, stream: AudioStream, audio: np.ndarray, audio_rate: int, channels: int
) -> None:
    fmt = "fltp" if stream.codec_context.name == "aac" else "s16"  # packed 16-bit: PCM, mp2 and opus take it
    block = 1024
    samples = np.asarray(audio, np.float32)
    for start in range(0, len(samples), block):
        chunk = samples[start : start + block]
        data = np.repeat(chunk[None, :], channels, axis=0)  # (C, n)
        if fmt == "s16":
            data = (np.clip(data, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)  # packed (1, n*C)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=stream.layout.name)
        frame.sample_rate = audio_rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_face_clip(
    path: Path,
    seconds: float = 2.0,
    fps: float = 25.0,
    with_audio: bool = True,
    audio: str = "tone",
    faces: int = 1,
    size: tuple[int, int] = FRAME_SIZE,
    audio_rate: int = AUDIO_RATE,
    channels: int = 1,
) -> Path:
    """An mp4 of the astronaut's face with a tone, speech-like or silent audio track."""
    n = max(1, int(round(seconds * fps)))
    samples = make_audio(seconds, audio, audio_rate) if with_audio else None
    return write_media(path, face_frames(n, size, faces), fps, samples, audio_rate, channels)


def write_labelled_corpus(
    root: Path,
    texts: Sequence[str],
    labels: Sequence[float],
    splits: Sequence[str],
    seconds: float = 1.0,
    fps: float = 10.0,
    seed: int = 0,
) -> Path:
    """Write a small corpus in MMSA's raw layout, `root/label.csv` beside `root/Raw/<video>/<clip>.mp4`.

    One face clip with speech-like audio per text (the audio differs per clip
    through `seed`). The clips carry no sentiment of their own: the label is
    whatever the caller gives, so a model trained on them learns it from the
    text. Clips already on disk are kept, so a re-run only writes what is
    missing. Returns the label file.
    """
    if not (len(texts) == len(labels) == len(splits)):
        raise ValueError("texts, labels and splits must have the same length")
    root = Path(root)
    rows = [["video_id", "clip_id", "text", "label", "mode"]]
    for i, (text, label, split) in enumerate(zip(texts, labels, splits)):
        video, clip = f"v{i // 5:02d}", f"{i % 5:02d}"
        path = root / "Raw" / video / f"{clip}.mp4"
        if not path.is_file():
            n = max(1, int(round(seconds * fps)))
            write_media(path, face_frames(n), fps, make_audio(seconds, "speech", seed=seed + i))
        rows.append([video, clip, text, f"{float(label):.1f}", split])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    write_text(root / "label.csv", out.getvalue())
    return root / "label.csv"
