"""DeepMLF speed on CPU (or CUDA): one training step of the SIMS shape, or whole epochs of a MOSI-shaped set.

Prints figures; asserts nothing. GPT-2-base config with random weights (no
download) in both modes.

Step mode (default): 7 MM blocks after layers 5..11, 20 fusion tokens,
batch 32, text 39 tokens (44 % padding), audio 400x33, vision 55x709; time
per forward+backward+AdamW step (wall and process CPU time), eval forward,
peak RSS (run each configuration in its own process: the peak is the
process's). `--no-lean-memory` keeps for backward what plain autograd keeps
(models/nn/memory.py off: the "before"), `--no-optimizer` leaves out AdamW
and its state, `--lm uer/gpt2-chinese-cluecorpussmall` takes SIMS's own LM
config (21128-token vocabulary), `--mmap-threshold 131072` fixes glibc's
mmap threshold (RSS then follows the live tensors; costs page faults).

    .venv/bin/python benchmarks/bench_model.py [--steps 3] [--device cpu] [--batch 32] [--no-lean-memory]

Epoch mode: a synthetic set shaped like CMU-MOSI's 1284 training clips
(transcript lengths drawn from a log-normal fitted to MOSI's: mean 12.5
words, median 10, 90th percentile 23, max 114; one token per word, cut to the
reference's 50; audio 375x5, vision 500x20), trained through the code
`deepmlf train` runs (`fit`) and evaluated through `predict_encoded`. Every
optimisation can be switched off. `--table` runs the standard set of
configurations, each in its own process (so each peak RSS is its own):

    .venv/bin/python benchmarks/bench_model.py --mode epoch --table --clips 128
    .venv/bin/python benchmarks/bench_model.py --mode epoch --clips 128 --fixed-length 50 --batching shuffle \\
        --no-prefix --no-cache --no-logits-budget        # the reference's way, none of ours

Training batches are cut as `deepmlf train --batching` cuts them (window by default: a
seeded uniform shuffle, as the reference draws, with each optimizer step's clips regrouped by length), with the presets'
gradient accumulation 8 (fewer when a small --clips subset has fewer micro-batches).

`--lm-dtype bfloat16` (step and epoch modes) runs the frozen LM in bf16 under
bf16 autocast, as `deepmlf train --lm-dtype bfloat16` does; the table's last
two rows are that. `--rows 1,8,9` runs a subset of the table (row 0, the
reference-style one, always runs), `--reference-epochs 1` gives that row one
epoch (it has no cache, so each of its epochs costs the same):

    .venv/bin/python benchmarks/bench_model.py --mode epoch --table --rows 1,2,8,9 --reference-epochs 1

Epoch 1 fills the prefix cache; epoch 2 is what every later epoch costs. The
eval pass is timed twice over a separate split of the same size: cold, then
warm (as every validation pass after the first).
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# bf16 dense peak FLOP/s by GPU name fragment (vendor data sheets), for the model-FLOPs utilisation.
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "L4": 121.0,
    "V100": 125.0,
    "T4": 65.0,
}

# --table: name → switches (the first row is the reference's way; speedups are against it).
TABLE = {
    "reference-style (fixed 50, shuffle, none)": [
        "--fixed-length",
        "50",
        "--batching",
        "shuffle",
        "--no-prefix",
        "--no-cache",
        "--no-logits-budget",
    ],
    "all on, window batching (default)": [],
    "all on, LM dropout off": ["--lm-dropout", "off"],
    "LM dropout off, --no-cache": ["--lm-dropout", "off", "--no-cache"],
    "all on, --no-prefix": ["--no-prefix"],
    "all on, --batching shuffle": ["--batching", "shuffle"],
    "all on, --batching bucketed": ["--batching", "bucketed"],
    "all on, --fixed-length 50": ["--fixed-length", "50"],
    # bf16 autocast on the CPU (opt-in: `deepmlf train --lm-dtype bfloat16`; fast with AVX512-BF16/AMX)
    "all on, bf16 LM": ["--lm-dtype", "bfloat16"],
    "all on, bf16 LM, LM dropout off": ["--lm-dtype", "bfloat16", "--lm-dropout", "off"],
}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def gpu_peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


# --- step mode -------------------------------------------------------------------------------------


def step_mode(args) -> None:
    from models.config import get_preset
    from models.devices import autocast_context, model_autocast, resolve_lm_dtype
    from models.nn.deepmlf import DeepMLF
    from models.nn.interface import Batch
    from models.nn.lm import load_causal_lm

    device = torch.device(args.device)
    if args.mmap_threshold:
        from models.nn.memory import fix_mmap_threshold

        print(f"glibc mmap threshold fixed at {args.mmap_threshold} B: {fix_mmap_threshold(args.mmap_threshold)}")
    config = get_preset("sims").model_config(lm=args.lm, n_fusion=20)
    hf_lm, _ = load_causal_lm(args.lm, random_init=True, dtype=resolve_lm_dtype(args.lm_dtype, device))
    model = DeepMLF(config, hf_lm)
    apply_switches(model, args)
    model.to(device)
    autocast = model_autocast(model, device)  # as `deepmlf train` decides it
    B, T = args.batch, 39
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, T + 1, (B,), generator=g)  # real transcripts are shorter than 39
    text_valid = torch.arange(T)[None, :] >= (T - lengths)[:, None]  # left padding
    batch = Batch(
        text_ids=torch.randint(0, 21128, (B, T), generator=g),
        text_valid=text_valid,
        audio=torch.randn(B, 400, 33, generator=g),
        audio_lengths=torch.randint(100, 401, (B,), generator=g),
        vision=torch.randn(B, 55, 709, generator=g),
        vision_lengths=torch.randint(20, 56, (B,), generator=g),
        labels=torch.rand(B, generator=g) * 2 - 1,
    ).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"LM config {args.lm}, device {device}, threads {torch.get_num_threads()}, trainable {trainable / 1e6:.2f} M, "
        f"padding {1 - float(text_valid.float().mean()):.0%} of text positions, "
        f"prefix path {'on' if model.prefix_path else 'off'}, "
        f"LM-loss recompute {'only past the budget' if model.logits_budget_bytes else 'always'}, "
        f"lean memory {'off' if args.no_lean_memory else 'on'}, LM {str(hf_lm.dtype).removeprefix('torch.')}, "
        f"bf16 autocast {'on' if autocast else 'off'}"
    )

    # AdamW over the trainable parameters, as `deepmlf train` steps them (its state is part of the peak).
    optimizer = (
        torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
        if not args.no_optimizer
        else None
    )

    cpu_seconds = []  # process CPU time per step: less blurred than wall time when other jobs share the cores

    def step() -> float:
        model.train()
        start, cpu_start = time.perf_counter(), time.process_time()
        with autocast_context(device, autocast):
            out = model(batch)
        out.loss.backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        cpu_seconds.append(time.process_time() - cpu_start)
        return time.perf_counter() - start

    def eval_forward() -> float:
        model.eval()
        start = time.perf_counter()
        with torch.no_grad(), autocast_context(device, autocast):
            model(batch, compute_loss=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warm = step()
    times = [step() for _ in range(args.steps)]
    evals = [eval_forward() for _ in range(args.steps)]
    what = "forward+backward+AdamW" if optimizer is not None else "forward+backward"
    print(
        f"train step ({what}, batch {B}): first {warm:.2f} s, then mean {sum(times) / len(times):.2f} s "
        f"(min {min(times):.2f}); process CPU time per step (all threads) {min(cpu_seconds[1:]):.2f} s"
    )
    print(f"eval forward (no LM logits): mean {sum(evals) / len(evals):.2f} s")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        tokens = B * (T + config.n_fusion)
        print(f"train tokens/s (text + fusion positions): {tokens / min(times):,.0f}")
    print(f"peak process RSS: {peak_rss_gib():.2f} GiB")


def apply_switches(model, args) -> None:
    """The model-side optimisations that are class switches on DeepMLF."""
    if args.no_prefix:
        model.prefix_path = False
    if args.no_logits_budget:
        model.logits_budget_bytes = 0
    if args.no_lean_memory:
        from models.nn import memory

        memory.enabled = False


# --- epoch mode ------------------------------------------------------------------------------------


def mosi_like_lengths(n: int, seed: int):
    """Transcript lengths (words) with MOSI's shape: log-normal, median 10, p90 23 (mean ≈ 12.5), max 114."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sigma = (np.log(23) - np.log(10)) / 1.2816  # p90 = median·e^(1.2816σ)
    lengths = np.clip(np.rint(np.exp(np.log(10) + sigma * rng.standard_normal(n))), 1, 114).astype(int)
    lengths[int(rng.integers(n))] = 114  # MOSI's longest transcript is in every subset
    return lengths


def synthetic_split(n: int, seed: int, vocab: int, max_tokens: int, bucketed: bool, pad_to: int):
    """A MOSI-shaped encoded split; `bucketed`: evaluation batches sorted by length (else in order)."""
    import numpy as np

    from models.data.batching import EncodedSplit

    rng = np.random.default_rng(seed + 1)
    lengths = np.minimum(mosi_like_lengths(n, seed), max_tokens)
    token_ids = [rng.integers(0, vocab, int(k)).tolist() for k in lengths]
    audio_lengths = rng.integers(100, 376, n)
    vision_lengths = rng.integers(100, 501, n)
    audio = rng.standard_normal((n, 375, 5), dtype=np.float32)
    audio *= np.arange(375)[None, :, None] < audio_lengths[:, None, None]  # zero past each clip's length
    vision = rng.standard_normal((n, 500, 20), dtype=np.float32)
    vision *= np.arange(500)[None, :, None] < vision_lengths[:, None, None]
    return EncodedSplit(
        [f"clip{i}" for i in range(n)],
        token_ids,
        audio.astype(np.float32),
        audio_lengths,
        vision.astype(np.float32),
        vision_lengths,
        rng.uniform(-3, 3, n).astype(np.float32),
        pad_id=50256,
        bucketed=bucketed,
        pad_to=pad_to,
    )


class _Timer:
    """fit callbacks: training time of each epoch (first batch to last batch); FLOPs of the last one.

    The FLOPs are counted by torch's FlopCounterMode on the ops that ran (a
    figure the machine's load cannot blur, unlike the times). The counter's
    bookkeeping fragments the heap (peak RSS grows ~0.1 GiB a step under it
    while the live tensors stay flat), so the peak RSS is read before the
    counted epoch starts: it covers the epochs before it and their validation.
    """

    def __init__(self, device: torch.device, epochs: int) -> None:
        self.device, self.epochs, self.train_seconds, self.records = device, epochs, [], []
        self.counter, self.flops, self._left = None, None, 0
        self.rss_before_counting: float | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def on_epoch_start(self, epoch, n_batches):
        if epoch == self.epochs - 1:
            from torch.utils.flop_counter import FlopCounterMode

            if epoch > 0:
                self.rss_before_counting = peak_rss_gib()
            self.counter, self._left = FlopCounterMode(display=False), n_batches
            self.counter.__enter__()
        self._sync()
        self._start = time.perf_counter()

    def on_batch(self, loss):
        self._sync()
        self._end = time.perf_counter()
        if self.counter is not None:
            self._left -= 1
            if self._left == 0:
                self.counter.__exit__(None, None, None)
                self.flops, self.counter = self.counter.get_total_flops(), None

    def on_epoch_end(self, epoch, record):
        self.train_seconds.append(self._end - self._start)
        self.records.append(record)


def full_set_padding(batching: str, pad_to: int, batch: int, grad_accum: int, max_tokens: int) -> float:
    """The text padding share an epoch of all 1284 clips would have (lengths only, no model)."""
    import numpy as np

    from models.data.batching import EncodedSplit, training_batches

    lengths = np.minimum(mosi_like_lengths(1284, 0), max_tokens)
    split = EncodedSplit(
        [""] * 1284,
        [[0] * int(k) for k in lengths],
        np.zeros((1284, 1, 1)),
        np.ones(1284),
        np.zeros((1284, 1, 1)),
        np.ones(1284),
        np.zeros(1284),
        0,
        pad_to=pad_to,
    )
    batches, _ = training_batches(split, batch, grad_accum, np.random.default_rng(0), batching)
    cells = sum(len(b) * max(pad_to, int(lengths[b].max())) for b in batches)
    return 1 - float(lengths.sum()) / cells


def epoch_mode(args) -> dict:
    from models.config import TrainConfig, get_preset
    from models.devices import resolve_lm_dtype
    from models.evaluation.inference import predict_encoded
    from models.nn.deepmlf import DeepMLF
    from models.nn.lm import load_causal_lm
    from models.training.loop import fit

    device = torch.device(args.device)
    max_tokens = 50  # the reference's fixed length; every configuration sees the same tokens
    config = get_preset("sims").model_config(
        lm="gpt2",
        n_fusion=20,
        d_audio=5,
        d_vision=20,
        av_pool_len=50,
        av_input_batchnorm=False,
        max_text_tokens=max_tokens,
        lm_dropout=args.lm_dropout == "on",
    )
    torch.manual_seed(0)
    hf_lm, _ = load_causal_lm("gpt2", random_init=True, dtype=resolve_lm_dtype(args.lm_dtype, device))
    model = DeepMLF(config, hf_lm)
    apply_switches(model, args)
    vocab = hf_lm.config.vocab_size
    # The reference evaluates in the split's order; ours sorts by length (no change to the math).
    bucketed, pad_to = args.batching != "shuffle", args.fixed_length or 0
    train = synthetic_split(args.clips, 0, vocab, max_tokens, bucketed, pad_to)
    valid = synthetic_split(8, 1, vocab, max_tokens, bucketed, pad_to)  # fit's own validation: small, not timed
    evaluation = synthetic_split(args.clips, 2, vocab, max_tokens, bucketed, pad_to)
    grad_accum = max(1, min(args.grad_accum, -(-args.clips // args.batch)))  # at least one step on a small subset
    train_config = TrainConfig(
        batch_size=args.batch,
        grad_accum=grad_accum,
        max_epochs=args.epochs,
        patience=args.epochs + 1,
        prefix_cache_gib=0.0 if args.no_cache else args.cache_gib,
        compile=args.compile,
        batching=args.batching,
        lm_dtype=args.lm_dtype,
    )
    timer = _Timer(device, args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, train, valid, train_config, "mosi", Path(tmp), seed=0, callbacks=timer, device=args.device)
    from torch.utils.flop_counter import FlopCounterMode

    evals, eval_flops = [], None
    for warm in (False, True):  # cold, then warm (what every validation pass after the first costs)
        counter = FlopCounterMode(display=False) if warm else None
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if counter is not None:
            with counter:
                predict_encoded(model, evaluation, train_config.eval_batch_size, device)
            eval_flops = counter.get_total_flops()
        else:
            predict_encoded(model, evaluation, train_config.eval_batch_size, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        evals.append(time.perf_counter() - start)
    row = {
        "clips": args.clips,
        "epochs": [round(s, 2) for s in timer.train_seconds],
        "eval_cold": round(evals[0], 2),
        "eval_warm": round(evals[1], 2),
        "train_tflop": round(timer.flops / 1e12, 3),
        "eval_tflop": round(eval_flops / 1e12, 3),
        "text_padding": timer.records[-1]["text_padding"],
        "text_padding_1284": round(full_set_padding(args.batching, pad_to, args.batch, args.grad_accum, max_tokens), 4),
        "batching": args.batching,
        "grad_accum": grad_accum,
        "cache": model.prefix_cache.stats() if model.prefix_cache is not None else None,
        "peak_rss_gib": round(timer.rss_before_counting, 2) if timer.rss_before_counting else None,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        seconds = timer.train_seconds[-1]
        tokens = sum(len(t) for t in train.token_ids)
        row.update(
            text_tokens_per_s=round(tokens / seconds),
            achieved_tflops=round(timer.flops / seconds / 1e12, 1),
            peak_gpu_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
        )
        peak = gpu_peak_tflops(device, args.peak_tflops)
        if peak:
            row["mfu"] = round(timer.flops / seconds / (peak * 1e12), 4)
    return row


def table(args, passthrough: list[str]) -> None:
    rows = {}
    wanted = {0, *(int(n) for n in args.rows.split(","))} if args.rows else set(range(len(TABLE)))
    for number, (name, switches) in enumerate(TABLE.items()):
        if number not in wanted:
            continue
        epochs = ["--epochs", str(args.reference_epochs)] if number == 0 and args.reference_epochs else []
        command = [sys.executable, __file__, "--mode", "epoch", "--json", *passthrough, *switches, *epochs]
        print(f"running: {name} ...", file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    if not rows:
        return
    any_row = next(iter(rows.values()))
    print(
        f"\nepoch mode: {any_row['clips']} MOSI-shaped clips (a subset of 1284 when fewer), GPT-2-base config, "
        f"batch {args.batch} x {any_row['grad_accum']} accumulated, device {any_row['device']}, "
        f"{any_row['threads']} threads"
    )
    header = (
        f"{'configuration':42} {'epoch 1':>7} {'epoch 2':>7} {'eval':>5} {'eval':>5} {'train':>6} {'eval':>5} "
        f"{'pad':>4} {'pad':>5} {'RSS':>5} {'speedup':>7} {'speedup':>7} {'cache':>5}"
    )
    print(header)  # epoch 2: the last epoch run (the reference-style row's only one with --reference-epochs 1)
    print(
        f"{'':42} {'s':>7} {'s':>7} {'cold':>5} {'warm':>5} {'TFLOP':>6} {'TFLOP':>5} "
        f"{'':>4} {'1284':>5} {'GiB':>5} {'time':>7} {'FLOP':>7} {'MiB':>5}"
    )
    ref = rows.get(next(iter(TABLE)))
    for name, r in rows.items():
        steady = r["epochs"][-1] + r["eval_warm"]
        speedup = f"{(ref['epochs'][-1] + ref['eval_warm']) / steady:.2f}x" if ref else "-"
        flop_speedup = (
            f"{(ref['train_tflop'] + ref['eval_tflop']) / (r['train_tflop'] + r['eval_tflop']):.2f}x" if ref else "-"
        )
        cache = f"{r['cache']['mib']:.0f}" if r["cache"] else "-"
        print(
            f"{name:42} {r['epochs'][0]:7.1f} {r['epochs'][-1]:7.1f} {r['eval_cold']:5.1f} {r['eval_warm']:5.1f} "
            f"{r['train_tflop']:6.2f} {r['eval_tflop']:5.2f} {r['text_padding']:4.0%} {r['text_padding_1284']:5.0%} "
            f"{r['peak_rss_gib'] or float('nan'):5.2f} {speedup:>7} {flop_speedup:>7} {cache:>5}"
        )
    scale = 1284 / any_row["clips"]
    if ref and scale != 1:
        print(
            f"per epoch of all 1284 clips (x{scale:.1f}, extrapolated): reference-style "
            f"{ref['epochs'][-1] * scale / 60:.1f} min; "
            + "; ".join(f"{n} {r['epochs'][-1] * scale / 60:.1f} min" for n, r in rows.items() if r is not ref)
        )
    print(
        "speedup: (epoch 2 train + warm eval) of the reference-style row over this row's, in seconds and in "
        "FLOPs counted by torch's FlopCounterMode; pad 1284: the padding share of a full 1284-clip epoch; "
        "RSS: peak before the FLOP-counted last epoch (nan with one epoch; the SIMS step's peak: --mode step)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("step", "epoch"), default="step")
    parser.add_argument("--steps", type=int, default=3, help="step mode: timed steps")
    parser.add_argument(
        "--lm",
        default="gpt2",
        help="step mode: the LM's config (SIMS's own: "
        "uer/gpt2-chinese-cluecorpussmall, the same GPT-2-base shape with a 21128-token vocabulary)",
    )
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=0,
        help="step mode: fix glibc's mmap threshold at N bytes (models.nn.memory.fix_mmap_threshold)",
    )
    parser.add_argument("--no-optimizer", action="store_true", help="step mode: no AdamW step (backward only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--clips", type=int, default=1284, help="epoch mode: training clips (MOSI has 1284)")
    parser.add_argument("--epochs", type=int, default=2, help="epoch mode: epochs (the 2nd shows the cache's reuse)")
    parser.add_argument("--fixed-length", type=int, default=0, help="pad every transcript to N tokens (reference: 50)")
    parser.add_argument(
        "--batching",
        choices=("window", "shuffle", "bucketed"),
        default="window",
        help="epoch mode: training batches as `deepmlf train --batching` (shuffle: the reference's)",
    )
    parser.add_argument(
        "--grad-accum",
        type=int,
        default=8,
        help="epoch mode: micro-batches per optimizer step (the presets' 8; the window's size)",
    )
    parser.add_argument("--no-prefix", action="store_true", help="full pass below the first MM block")
    parser.add_argument("--no-cache", action="store_true", help="no per-clip prefix cache")
    parser.add_argument("--no-logits-budget", action="store_true", help="always recompute the LM-loss logits")
    parser.add_argument(
        "--no-lean-memory",
        action="store_true",
        help="keep for backward what plain autograd keeps (models/nn/memory.py off)",
    )
    parser.add_argument("--lm-dropout", choices=("on", "off"), default="on", help="frozen LM's dropout in training")
    parser.add_argument(
        "--lm-dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="frozen LM weights as `deepmlf train --lm-dtype` (auto: bf16 on CUDA, fp32 on CPU); "
        "bfloat16 computes under bf16 autocast",
    )
    parser.add_argument("--cache-gib", type=float, default=2.0, help="prefix cache budget")
    parser.add_argument("--compile", action="store_true", help="torch.compile the MM blocks and the AV encoder")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's bf16 peak, if not in the table")
    parser.add_argument(
        "--table", action="store_true", help="epoch mode: every standard configuration, one process each"
    )
    parser.add_argument(
        "--rows",
        default="",
        help="--table: only these rows (0-based, comma-separated; the reference-style row 0 always runs)",
    )
    parser.add_argument(
        "--reference-epochs",
        type=int,
        default=0,
        help="--table: epochs of the reference-style row (it has no cache: each epoch costs the same)",
    )
    parser.add_argument("--json", action="store_true", help="epoch mode: print the row as one JSON line")
    args = parser.parse_args()
    if args.mode == "step":
        step_mode(args)
        return
    if args.table:
        passthrough = [
            "--clips",
            str(args.clips),
            "--epochs",
            str(args.epochs),
            "--batch",
            str(args.batch),
            "--grad-accum",
            str(args.grad_accum),
            "--device",
            args.device,
            "--cache-gib",
            str(args.cache_gib),
        ]
        if args.compile:
            passthrough.append("--compile")
        table(args, passthrough)
        return
    row = epoch_mode(args)
    print(json.dumps(row) if args.json else "\n".join(f"{k}: {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
