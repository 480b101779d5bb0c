"""Memory at paper scale: a MOSEI-sized dataset and the mosi preset's 1.7B LM. Prints figures; asserts nothing.

Parts (each measured in a fresh subprocess, so every peak RSS is its own):

* data:  write a synthetic MOSEI-sized dataset (16326/1871/4659 clips, audio
  500x74, vision 500x35) in the deepmlf npz format to a temp dir, then load it
  through the real loader and normalise it as training does (in place) and
  as before (a normalised copy beside the raw arrays). Peak host RSS against
  the raw arrays' bytes (target <= 1.5x).
* model: the mosi preset (5 LoRA MM blocks, n_f 8) on SmolLM2-1.7B shapes with
  random weights: build time, one training step at batch 4 (text 50, audio
  375x5, vision 500x20) without and with --checkpoint-layers, peak RSS (and
  peak GPU memory on CUDA), each after one warm-up step. On CPU the LM defaults to bf16 weights under CPU
  bf16 autocast (1.7B fp32 is ~7 GB); --lm-dtype float32 for fp32.

Usage:
    python benchmarks/bench_scale.py [--part data|model|all] [--scale 1.0] [--device cpu|cuda]
                                     [--lm-dtype bfloat16|float32] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MOSEI = {"train": 16326, "valid": 1871, "test": 4659}
AUDIO, VISION = (500, 74), (500, 35)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_dataset(out: Path, scale: float) -> int:
    """A synthetic MOSEI-sized dataset in the deepmlf format, one split at a time; returns the feature bytes."""
    import numpy as np

    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    counts = {k: max(2, int(v * scale)) for k, v in MOSEI.items()}
    for name, n in counts.items():
        arrays = {}
        for key, (t, d) in (("audio", AUDIO), ("vision", VISION)):
            x = rng.standard_normal((n, t, d), dtype=np.float32)
            lengths = rng.integers(50, t + 1, n)
            x *= (np.arange(t)[None, :] < lengths[:, None])[..., None]  # zero padding at the end
            x[rng.integers(0, n, 20), 0, 0] = -np.inf  # COVAREP's dirt
            arrays[key], arrays[f"{key}_lengths"] = x, lengths.astype(np.int64)
            total += x.nbytes
        arrays["labels"] = rng.uniform(-3, 3, n).astype(np.float32)
        arrays["ids"] = np.array([f"v{i}$_${i}" for i in range(n)])
        arrays["texts"] = np.array(["a synthetic transcript of a few words"] * n)
        np.savez(out / f"{name}.npz", **arrays)
        del arrays, x
    manifest = {
        "format": "deepmlf-dataset",
        "version": 1,
        "name": "mosei-synthetic",
        "scheme": "mosi",
        "splits": counts,
        "audio_features": None,
        "vision_features": None,
        "recipe": None,
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return total


def worker_data(path: str, in_place: bool) -> dict:
    """Load and normalise as training does; report peak RSS."""
    from models.data.batching import encode_split
    from models.data.load import load_dataset
    from models.data.normalize import FeatureNormalizer

    imports_rss = peak_rss_mb()  # interpreter, numpy, torch: not the dataset's
    started = time.time()
    dataset = load_dataset(path)
    loaded_rss = peak_rss_mb()
    normalizer = FeatureNormalizer.fit(dataset.splits["train"])
    encoded = {k: encode_split(s, None, 50, normalizer, in_place=in_place) for k, s in dataset.splits.items()}
    raw = sum(s.audio.nbytes + s.vision.nbytes for s in encoded.values())
    return {
        "in_place": in_place,
        "seconds": round(time.time() - started, 1),
        "raw_mb": raw / 2**20,
        "peak_after_load_mb": loaded_rss,
        "imports_mb": imports_rss,
        "peak_rss_mb": peak_rss_mb(),
        "ratio": peak_rss_mb() * 2**20 / raw,
    }


def worker_model(device_name: str, lm_dtype: str, batch_size: int, checkpointing: list[bool]) -> dict:
    """Build the mosi preset on SmolLM2-1.7B shapes (random weights) and time one training step per setting."""
    import torch

    from models.config import get_preset
    from models.devices import autocast_context
    from models.nn.interface import Batch
    from models.nn.lm import load_causal_lm
    from models.nn.registry import build_model

    torch.manual_seed(0)
    device = torch.device(device_name)
    dtype = getattr(torch, lm_dtype)
    config = get_preset("mosi").model_config()
    started = time.time()
    hf_lm, _ = load_causal_lm(config.lm, random_init=True, dtype=dtype)
    model = build_model("deepmlf", config, hf_lm).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    result = {
        "device": device_name,
        "lm_dtype": lm_dtype,
        "batch": batch_size,
        "build_s": round(time.time() - started, 1),
        "rss_after_build_mb": peak_rss_mb(),
        "trainable_M": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "lm_params_M": sum(p.numel() for p in hf_lm.parameters()) / 1e6,
        "steps": [],
    }
    B, T = batch_size, 50
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(10, T + 1, (B,), generator=g)
    batch = Batch(
        text_ids=torch.randint(0, 49152, (B, T), generator=g),
        text_valid=torch.arange(T)[None, :] >= (T - lengths)[:, None],
        audio=torch.randn(B, 375, 5, generator=g),
        audio_lengths=torch.full((B,), 375),
        vision=torch.randn(B, 500, 20, generator=g),
        vision_lengths=torch.full((B,), 500),
        labels=torch.linspace(-2, 2, B),
    ).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95))
    # bf16 weights need autocast (fp32 trainable layers meet bf16 activations); on CUDA it is always on.
    autocast = dtype == torch.bfloat16 or device.type == "cuda"
    model.train()
    # A warm-up step first (kernel set-up, AdamW state allocation), not reported.
    for ckpt in [checkpointing[0], *checkpointing]:
        model.lm.checkpoint_layers = ckpt
        reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        t0 = time.time()
        with autocast_context(device, enabled=autocast):
            out = model(batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        step = {
            "checkpoint_layers": ckpt,
            "step_s": round(time.time() - t0, 2),
            "loss": float(out.loss),
            "peak_rss_mb": peak_rss_mb(),
        }
        if device.type == "cuda":
            step["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["steps"].append(step)
    result["steps"] = result["steps"][1:]
    return result


def reset_peak_rss() -> None:
    """Restart VmHWM from the current RSS (Linux `clear_refs` 5), so each step reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def run_worker(args: list[str]) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def part_data(scale: float, compare: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        path = Path(tmp) / "mosei"
        t0 = time.time()
        raw = write_dataset(path, scale)
        on_disk = sum(f.stat().st_size for f in path.iterdir())
        print(
            f"data: synthetic MOSEI x{scale:g} ({', '.join(f'{k} {max(2, int(v * scale))}' for k, v in MOSEI.items())}"
            f" clips): raw features {raw / 2**30:.2f} GiB, {on_disk / 2**30:.2f} GiB on disk, written in "
            f"{time.time() - t0:.0f} s"
        )
        for in_place in [True, False] if compare else [True]:
            r = run_worker(["data", str(path), str(int(in_place))])
            label = "in place (training)" if in_place else "normalised copy (before)"
            print(
                f"  {label:26s} peak RSS {r['peak_rss_mb'] / 1024:.2f} GiB = {r['ratio']:.2f}x the raw arrays "
                f"(imports {r['imports_mb'] / 1024:.2f} GiB, after load {r['peak_after_load_mb'] / 1024:.2f} GiB; "
                f"dataset alone {(r['peak_rss_mb'] - r['imports_mb']) * 2**20 / (r['raw_mb'] * 2**20):.2f}x), "
                f"{r['seconds']} s"
            )


def part_model(device: str, lm_dtype: str, batch: int) -> None:
    r = run_worker(["model", device, lm_dtype, str(batch)])
    print(
        f"model: mosi preset on SmolLM2-1.7B shapes (random weights, {r['lm_params_M']:.0f} M LM params, "
        f"{r['trainable_M']:.1f} M trainable), {device}, LM {lm_dtype}: built in {r['build_s']} s, "
        f"RSS after build {r['rss_after_build_mb'] / 1024:.2f} GiB"
    )
    for s in r["steps"]:
        gpu = f", peak GPU {s['peak_gpu_mb'] / 1024:.2f} GiB" if "peak_gpu_mb" in s else ""
        print(
            f"  one training step, batch {batch}, checkpoint_layers={str(s['checkpoint_layers']):5s}: "
            f"{s['step_s']} s ({batch * 58 / s['step_s']:.0f} tokens/s over 50+8 positions), "
            f"peak RSS {s['peak_rss_mb'] / 1024:.2f} GiB{gpu} (loss {s['loss']:.3f})"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, *rest = sys.argv[2:]
        if kind == "data":
            result = worker_data(rest[0], bool(int(rest[1])))
        else:
            result = worker_model(rest[0], rest[1], int(rest[2]), [False, True])
        print(json.dumps(result))
        return
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["data", "model", "all"], default="all")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of MOSEI's clip counts (data part)")
    parser.add_argument("--no-compare", action="store_true", help="data part: skip the normalised-copy baseline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lm-dtype", default=None, help="bfloat16 (default) or float32")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    if args.part in ("data", "all"):
        part_data(args.scale, not args.no_compare)
    if args.part in ("model", "all"):
        part_model(args.device, args.lm_dtype or "bfloat16", args.batch)


if __name__ == "__main__":
    main()
