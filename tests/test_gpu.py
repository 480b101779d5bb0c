"""On a CUDA device (skipped elsewhere): a bf16 training step, and a one-process NCCL DDP training run.

`benchmarks/gpu_check.sh` runs these with `-s`, so the figures they print
(step time, peak GPU memory, tokens/s) show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import free_port

pytestmark = pytest.mark.gpu


def test_bf16_training_step_on_cuda(tiny_llama):
    from models.config import get_preset
    from models.devices import autocast_context, resolve_device, resolve_lm_dtype
    from models.nn.interface import Batch
    from models.nn.lm import load_causal_lm
    from models.nn.registry import build_model

    device = resolve_device("auto")
    assert device.type == "cuda"
    dtype = resolve_lm_dtype("auto", device)
    assert dtype == torch.bfloat16  # the frozen LM's default on CUDA
    hf_lm, _ = load_causal_lm(str(tiny_llama), dtype=dtype)
    config = get_preset("sample").model_config(lm=str(tiny_llama), mm_layers=(1, 3), n_fusion=4, d_audio=7, d_vision=5)
    torch.manual_seed(0)
    model = build_model("deepmlf", config, hf_lm).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 and p.is_cuda for p in trainable)
    B, T = 16, 32
    batch = Batch(
        text_ids=torch.randint(1, 300, (B, T)),
        text_valid=torch.ones(B, T, dtype=torch.bool),
        audio=torch.randn(B, 40, 7),
        audio_lengths=torch.full((B,), 40),
        vision=torch.randn(B, 20, 5),
        vision_lengths=torch.full((B,), 20),
        labels=torch.linspace(-1, 1, B),
    ).to(device)
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    model.train()
    times = []
    torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast_context(device):
            out = model(batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        assert torch.isfinite(out.loss)
    step = min(times[1:])
    print(
        f"\n[gpu] bf16 step (tiny Llama, batch {B}, {T}+{config.n_fusion} positions): {step * 1e3:.1f} ms, "
        f"{B * (T + config.n_fusion) / step:.0f} tokens/s, peak GPU memory "
        f"{torch.cuda.max_memory_allocated() / 2**20:.1f} MiB"
    )


_DDP_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from models.config import get_preset
    from models.data.load import load_dataset
    from models.distributed import init_process_group, is_distributed
    from models.config import TrainConfig
    from models.run import RunSpec
    from models.training.experiment import train_run

    init_process_group()
    if not is_distributed():  # torchrun with one process sets WORLD_SIZE=1: join a group of one anyway
        torch.cuda.set_device(0)
        torch.distributed.init_process_group("nccl")
    assert torch.distributed.get_backend() == "nccl"
    data_path, lm_dir, out = sys.argv[1:4]
    model = get_preset("sample").model_config(lm=lm_dir, mm_layers=(1, 3), n_fusion=2)
    spec = RunSpec("deepmlf", model, TrainConfig(lr=1e-3, batch_size=8, grad_accum=2, max_epochs=1, patience=2), (0,))
    torch.cuda.reset_peak_memory_stats()
    results = train_run(load_dataset(data_path), spec, out)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20
    # The saved best checkpoint, reloaded and re-scored on the same device, must give the test
    # metrics the run reported: what DDP wrote is the model it evaluated.
    from pathlib import Path
    from models.evaluation.evaluate import evaluate_checkpoint
    rescored, _ = evaluate_checkpoint(Path(out) / "seed_0" / "best", load_dataset(data_path), "test", device="cuda")
    print(json.dumps({"peak_mb": peak_mb, "test": results["seeds"]["0"], "rescored": rescored}))
    torch.distributed.destroy_process_group()
""")


def test_one_process_nccl_ddp_training_run(tiny_gpt2, tmp_path):
    from models.data.format import save_dataset
    from models.data.sample import make_sample_dataset

    data = save_dataset(make_sample_dataset(n_train=40, n_valid=16, n_test=16, seed=1), tmp_path / "data")
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
        str(data),
        str(tiny_gpt2),
        str(tmp_path / "run"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (tmp_path / "run" / "seed_0" / "best" / "model.safetensors").is_file()
    test, rescored = result["test"], result["rescored"]
    assert 0 < result["peak_mb"] and 0 <= test["MAE"] < 2.0  # sample labels in [-1, 1]
    assert rescored["MAE"] == pytest.approx(test["MAE"], abs=1e-3)
    assert rescored["Mult_acc_2"] == pytest.approx(test["Mult_acc_2"], abs=1e-6)
    print(
        f"\n[gpu] one-process NCCL DDP run (1 epoch, tiny GPT-2): peak GPU memory {result['peak_mb']:.1f} MiB, "
        f"test MAE {result['test']['MAE']:.3f}"
    )
