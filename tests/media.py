"""Test media built offline: the synthetic clips of `extractors.synthetic` plus bad inputs.

Every builder writes one file and returns its path, so tests (and other test
modules) can compose corpora in a tmp dir without any download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extractors.synthetic import (  # noqa: F401 — re-exported for the tests
    AUDIO_RATE,
    FRAME_SIZE,
    blank_frames,
    face_frames,
    make_audio,
    make_face_clip,
    write_media,
)


def make_no_face_clip(path: Path, seconds: float = 2.0, fps: float = 25.0, audio: str = "tone") -> Path:
    """An mp4 whose frames hold no face (a moving gradient), with audio."""
    n = max(1, int(round(seconds * fps)))
    return write_media(path, blank_frames(n), fps, make_audio(seconds, audio))


def make_half_face_clip(path: Path, seconds: float = 2.0, fps: float = 25.0) -> Path:
    """An mp4 whose first half shows the face and second half no face."""
    n = max(2, int(round(seconds * fps)))
    frames = np.concatenate([face_frames(n // 2), blank_frames(n - n // 2)])
    return write_media(path, frames, fps, make_audio(seconds, "tone"))


def make_audio_only(path: Path, seconds: float = 2.0, audio: str = "speech", rate: int = AUDIO_RATE) -> Path:
    """A file with an audio track and no video track (.mp4 → aac, .wav → pcm)."""
    return write_media(path, None, audio=make_audio(seconds, audio, rate), audio_rate=rate)


def make_video_only(path: Path, seconds: float = 2.0, fps: float = 25.0) -> Path:
    """An mp4 with the face video track and no audio track."""
    return make_face_clip(path, seconds, fps, with_audio=False)


def make_one_frame_clip(path: Path) -> Path:
    """An mp4 holding exactly one video frame (and 40 ms of tone)."""
    return write_media(path, face_frames(1), 25.0, make_audio(0.04, "tone"))


def make_silent_clip(path: Path, seconds: float = 2.0) -> Path:
    """A face clip whose audio track is digital silence."""
    return make_face_clip(path, seconds, audio="silence")


def make_empty_file(path: Path) -> Path:
    """A 0-byte file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_text_as_mp4(path: Path) -> Path:
    """A text file with a video extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not a video\n" * 20)
    return path


def make_truncated_mp4(path: Path, keep: float = 0.5, seconds: float = 2.0) -> Path:
    """A face clip cut to the first `keep` fraction of its bytes (moov atom lost)."""
    path = Path(path)
    full = path.with_name(path.stem + ".full.mp4")
    make_face_clip(full, seconds)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_cut_playable_mp4(path: Path, keep: float = 0.3, seconds: float = 4.0) -> Path:
    """A face clip whose index is intact (faststart) but whose media data is cut: it opens, then stops early."""
    path = Path(path)
    full = path.with_name(path.stem + ".full.mp4")
    write_media(full, face_frames(int(seconds * 25)), 25.0, make_audio(seconds, "tone"), faststart=True)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_bad_inputs(folder: Path) -> dict[str, Path]:
    """The bad-input set of issue 4, one file each, keyed by a short name."""
    folder = Path(folder)
    return {
        "empty": make_empty_file(folder / "empty.mp4"),
        "text": make_text_as_mp4(folder / "text.mp4"),
        "truncated": make_truncated_mp4(folder / "truncated.mp4"),
        "audio_only": make_audio_only(folder / "audio_only.m4a"),
        "video_only": make_video_only(folder / "video_only.mp4"),
        "one_frame": make_one_frame_clip(folder / "one_frame.mp4"),
        "silent": make_silent_clip(folder / "silent.mp4"),
    }


def make_mmsa_corpus(root: Path, n_per_split=(3, 1, 1), scale: float = 1.0, seconds: float = 0.6) -> Path:
    """MMSA's raw layout: `label.csv` (text, labels, mode) and `Raw/<video>/<clip>.mp4` face clips with speech."""
    root = Path(root)
    rows = ["video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode"]
    i = 0
    for split, n in zip(("train", "valid", "test"), n_per_split):
        for _ in range(n):
            i += 1
            make_face_clip(root / "Raw" / f"vid{i % 2}" / f"{i:04d}.mp4", seconds + 0.2 * (i % 3), audio="speech")
            label = scale * ((-1) ** i) * 0.2 * (i % 5)
            rows.append(f"vid{i % 2},{i:04d},clip number {i},{label},{label},0.2,-0.4,Neutral,{split}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "label.csv").write_text("\n".join(rows) + "\n")
    return root


def make_short_audio_clip(path: Path, seconds: float = 5.0, audio_seconds: float = 3.0, fps: float = 25.0) -> Path:
    """A face clip whose audio track ends `seconds - audio_seconds` before the video, as `ffmpeg -shortest` or an editor writes it.

    Each track declares its own length (mp4/mov track headers, Matroska's per-track DURATION tag); the container says `seconds`.
    """
    n = max(1, int(round(seconds * fps)))
    return write_media(path, face_frames(n), fps, make_audio(audio_seconds, "speech"))


def make_cover_art_audio(path: Path, seconds: float = 2.0) -> Path:
    """An mp3 (or mp4/m4v) of speech with an album cover: a one-frame mjpeg stream marked attached_pic, as taggers write it."""
    import av

    from extractors.synthetic import _encode_audio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        audio = container.add_stream("libmp3lame" if path.suffix.lower() == ".mp3" else "aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        cover = container.add_stream("mjpeg", rate=1)
        cover.width = cover.height = 64
        cover.pix_fmt = "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(face_frames(1, (64, 64))[0], format="rgb24").reformat(format="yuvj420p")
        for packet in [*cover.encode(picture), *cover.encode()]:
            container.mux(packet)
        _encode_audio(container, audio, make_audio(seconds, "speech"), AUDIO_RATE, 1)
    return path


# Display matrices (16.16 fixed point, w in 2.30) as phones write them in the video track header.
_PORTRAIT_MATRIX = (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)  # stored sideways, shown turned 90° clockwise


def make_rotated_clip(
    path: Path, seconds: float = 0.4, fps: float = 10.0, size: tuple[int, int] = (320, 240)
) -> tuple[Path, np.ndarray]:
    """A phone-style portrait mp4: upright frames of `size` (H, W) stored sideways with a 90° display matrix.

    The frames are encoded turned 90° counter-clockwise (as the sensor sees
    them) and the track header's matrix says to turn them back, as a phone's
    camera app writes it. Returns the path and the upright frames (T, H, W, 3).
    """
    import struct

    n = max(1, int(round(seconds * fps)))
    upright = face_frames(n, size)  # (T, H, W, 3)
    stored = np.ascontiguousarray(np.rot90(upright, k=1, axes=(1, 2)))  # (T, W, H, 3): sideways
    write_media(path, stored, fps, None)
    data = bytearray(Path(path).read_bytes())
    at = data.find(b"tkhd")  # the only track is the video one
    version = data[at + 4]
    matrix_at = at + 8 + (28 if version == 1 else 16) + 16  # times, track id, duration; then reserved, layer, volume
    data[matrix_at : matrix_at + 36] = struct.pack(">9i", *_PORTRAIT_MATRIX)
    Path(path).write_bytes(bytes(data))
    return Path(path), upright
