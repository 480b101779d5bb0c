"""Forward+backward of the SIMS preset shape on CPU (or CUDA): time per step and peak memory.

GPT-2-base config with random weights (no download), 7 MM blocks after layers
5..11, 20 fusion tokens, batch 32, text 39 tokens, audio 400x33, vision 55x709.
Prints figures; asserts nothing. Usage:

    .venv/bin/python benchmarks/bench_model.py [--steps 3] [--device cpu] [--batch 32]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    from models.batching import autocast_context
    from models.config import get_preset
    from models.deepmlf import Batch, DeepMLF

    device = torch.device(args.device)
    config = get_preset("sims").model_config(lm="gpt2", n_fusion=20)
    model, _ = DeepMLF.from_config(config, random_init=True)
    model.to(device)
    B, T = args.batch, 39
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, T + 1, (B,), generator=g)  # real transcripts are shorter than 39
    text_valid = torch.arange(T)[None, :] >= (T - lengths)[:, None]  # left padding
    batch = Batch(
        text_ids=torch.randint(0, 21128, (B, T), generator=g), text_valid=text_valid,
        audio=torch.randn(B, 400, 33, generator=g), audio_lengths=torch.randint(100, 401, (B,), generator=g),
        vision=torch.randn(B, 55, 709, generator=g), vision_lengths=torch.randint(20, 56, (B,), generator=g),
        labels=torch.rand(B, generator=g) * 2 - 1,
    ).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"device {device}, threads {torch.get_num_threads()}, trainable {trainable / 1e6:.2f} M, "
          f"padding {1 - float(text_valid.float().mean()):.0%} of text positions")

    def step() -> float:
        model.train()
        start = time.perf_counter()
        with autocast_context(device):
            out = model(batch)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def eval_forward() -> float:
        model.eval()
        start = time.perf_counter()
        with torch.no_grad(), autocast_context(device):
            model(batch, compute_loss=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warm = step()
    times = [step() for _ in range(args.steps)]
    evals = [eval_forward() for _ in range(args.steps)]
    print(f"train step (forward+backward, batch {B}): first {warm:.2f} s, then mean {sum(times) / len(times):.2f} s "
          f"(min {min(times):.2f})")
    print(f"eval forward (no LM logits): mean {sum(evals) / len(evals):.2f} s")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    else:
        print(f"peak process RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
