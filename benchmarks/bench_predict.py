"""End-to-end latency of `deepmlf predict` on one 10 s clip, split by stage, cold (first call) and warm.

Stages: decode (PyAV audio at the recipe's rate + frames at its fps), audio
features, face features, transcript, model. The model is loaded before timing
starts; "cold" is the first clip of the process (MediaPipe graph, numba JIT,
first forward pass), "warm" the best of the next repeats. The transcript comes
from a .txt sidecar: Whisper weights are not available offline here, so its
cost (the dominant one with Whisper small on CPU) is not measured.

Without --model an untrained DeepMLF on a tiny GPT-2 (4 layers, 64 wide) with
the default recipe's feature sizes is built in a temporary directory; pass
`--model RUN_DIR` to time a real run. Run:
`.venv/bin/python benchmarks/bench_predict.py [--seconds 10] [--repeats 3] [--model RUN_DIR]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _untrained_run(tmp: Path, recipe: dict) -> Path:
    """A checkpoint directory holding an untrained DeepMLF (tiny GPT-2) whose meta carries `recipe`."""
    import numpy as np
    import torch

    from models.checkpoint import save_checkpoint
    from models.config import get_preset
    from models.data.normalize import FeatureNormalizer
    from models.nn.lm import load_causal_lm
    from models.nn.registry import build_model
    from models.nn.tiny_lm import build_tiny_lm

    lm_dir = build_tiny_lm(tmp / "tiny-gpt2", "gpt2")
    config = get_preset("sample").model_config(lm=str(lm_dir), d_audio=33, d_vision=181)
    hf_lm, _ = load_causal_lm(config.lm)
    model = build_model("deepmlf", config, hf_lm)
    norm = FeatureNormalizer(
        np.zeros(33, np.float32), np.ones(33, np.float32), np.zeros(181, np.float32), np.ones(181, np.float32)
    )
    extra = {k: torch.from_numpy(v) for k, v in norm.state_dict().items()}
    meta = {"kind": "deepmlf", "dataset": {"name": "bench", "scheme": "sims", "recipe": recipe}}
    return save_checkpoint(tmp / "run" / "seed_0" / "best", model, extra, meta)


def _stages(pipe, loaded, clip: Path) -> dict[str, float]:
    """Seconds per stage for one clip, the same work `extract_clip` + `predict_features` do."""
    from extractors.media import load_audio, probe, sample_frames
    from extractors.transcript import get_transcript
    from models.evaluation.predict import ClipInput, predict_features

    t = {}
    t0 = time.perf_counter()
    probe(clip)
    samples = load_audio(clip, pipe.audio.sample_rate)
    frames, times = sample_frames(clip, pipe.face.fps, None, None, pipe.face.max_side)
    t["decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    audio = pipe.audio.extract(samples, pipe.audio.sample_rate)
    t["audio"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vision = pipe.face.impl.extract(frames, times)
    t["face"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    text = get_transcript(clip, pipe.transcript_mode)
    t["transcript"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict_features(loaded, [ClipInput(audio.values, vision.values, text.text)])
    t["model"] = time.perf_counter() - t0
    t["total"] = sum(t.values())
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--repeats", type=int, default=3, help="warm repeats (best is reported)")
    parser.add_argument("--model", type=Path, default=None, help="a run directory (default: untrained tiny DeepMLF)")
    args = parser.parse_args()

    import torch

    import extractors.synthetic as tm
    from extractors.feature_recipe import FeatureRecipe, build_recipe
    from extractors.pipeline import Pipeline
    from models.checkpoint import load_model
    from models.run import Run

    print(f"torch threads {torch.get_num_threads()}, cpu cores {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp_name:
        tmp = Path(tmp_name)
        recipe = build_recipe(transcript="given")
        checkpoint = Run(args.model).best() if args.model else _untrained_run(tmp, recipe.to_dict())
        t0 = time.perf_counter()
        loaded = load_model(checkpoint)
        load_s = time.perf_counter() - t0
        if args.model:
            recipe = FeatureRecipe.from_dict(loaded.meta["dataset"]["recipe"]).with_transcript(mode="given")
        clip = tm.make_face_clip(tmp / "clip.mp4", args.seconds, fps=25, audio="speech", size=(240, 320))
        clip.with_suffix(".txt").write_text("I really liked this film, the acting was great.")
        t0 = time.perf_counter()
        pipe = Pipeline(recipe)
        build_s = time.perf_counter() - t0
        print(f"model load {load_s:.2f} s ({checkpoint}); extractor build {build_s:.2f} s (not in the rows below)")
        cold = _stages(pipe, loaded, clip)
        warm_runs = [_stages(pipe, loaded, clip) for _ in range(args.repeats)]
        warm = {k: min(r[k] for r in warm_runs) for k in cold}
        print(
            f"\n{args.seconds:.0f} s clip, 25 fps 320x240, speech-like audio; transcript from a .txt sidecar (no Whisper offline)"
        )
        print(f"{'stage':<12}{'cold s':>9}{'warm s':>9}{'warm RTF':>10}")
        for stage in cold:
            print(f"{stage:<12}{cold[stage]:>9.3f}{warm[stage]:>9.3f}{warm[stage] / args.seconds:>10.4f}")


if __name__ == "__main__":
    main()
