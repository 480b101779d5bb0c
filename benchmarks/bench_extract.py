"""Real-time factor of each extractor and of the whole pipeline, and scaling with --workers.

RTF = processing seconds / media seconds (< 1 is faster than real time).
Media is built offline (extractors/synthetic.py): 8 s face clips, 25 fps 320x240 video
with speech-like audio. Run: `.venv/bin/python benchmarks/bench_extract.py [--clips 6] [--seconds 8]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GLOG_minloglevel", "2")


def _time(fn, repeats: int = 2) -> float:
    """Best of `repeats` wall times (the first call of a process also pays imports and JIT warm-up)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=6, help="clips in the batch used for --workers scaling")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each clip")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts to compare")
    args = parser.parse_args()

    import extractors.synthetic as tm
    from extractors.audio import AudioExtractor
    from extractors.batch import run_extract
    from extractors.face import FaceExtractor
    from extractors.feature_recipe import build_recipe
    from extractors.media import load_audio, sample_frames
    from extractors.pipeline import extract_clip

    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        clip = tm.make_face_clip(tmp / "one.mp4", args.seconds, fps=25, audio="speech", size=(240, 320))
        secs = args.seconds
        print(f"cores: {os.cpu_count()}; clip: {secs:.0f} s, 25 fps 320x240, speech-like audio\n")
        rows = [
            ("decode audio 22050 Hz (PyAV)", lambda: load_audio(clip, 22050)),
            ("decode frames at 5 fps (PyAV)", lambda: sample_frames(clip, 5.0)),
        ]
        for backend in ("librosa_sims", "egemaps", "compare"):
            ex = AudioExtractor(backend)
            ex.extract(clip)  # warm-up: numba JIT, openSMILE config
            rows.append((f"audio {backend}", lambda ex=ex: ex.extract(clip)))
        functionals = AudioExtractor("egemaps", functionals=True)
        rows.append(("audio egemaps functionals", lambda: functionals.extract(clip)))
        for fps in (5.0, 10.0):
            ex = FaceExtractor("mediapipe", fps=fps)
            ex.extract(clip)
            rows.append((f"face mediapipe @ {fps:g} fps", lambda ex=ex: ex.extract(clip)))
        recipe = build_recipe(transcript="given")
        extract_clip(clip, recipe)
        rows.append(("pipeline default (audio + face @5fps)", lambda: extract_clip(clip, recipe)))
        print(f"{'extractor':40s} {'seconds':>8s} {'RTF':>7s}")
        for name, fn in rows:
            t = _time(fn)
            print(f"{name:40s} {t:8.3f} {t / secs:7.3f}")

        print(
            f"\nbatch of {args.clips} clips x {secs:.0f} s through run_extract (process pool, spawn; includes worker start-up):"
        )
        corpus = tmp / "corpus"
        for i in range(args.clips):
            shutil.copy(clip, corpus / f"c{i}.mp4") if corpus.exists() else (
                corpus.mkdir(),
                shutil.copy(clip, corpus / f"c{i}.mp4"),
            )
        print(f"{'workers':>8s} {'seconds':>8s} {'clips/s':>8s} {'RTF':>7s}")
        for n in args.workers:
            out = tmp / f"out{n}"
            summary = run_extract(corpus, out, recipe, workers=n)
            assert summary.count("done") == args.clips, summary.failed
            print(f"{n:8d} {summary.elapsed:8.2f} {summary.clips_per_s:8.3f} {summary.realtime_factor:7.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
