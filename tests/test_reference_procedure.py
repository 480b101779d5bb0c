"""The paper presets' training procedure against the released trainer, number by number (issue 21
items 1-6 and 11, window batching, and what `deepmlf describe` shows of every item; the model's
initialisation and AV pretraining, items 7-10 and 12-15, are in tests/test_reference_model.py).

Every expected value is written here from the reference's own formulas and
the real train-split sizes (MOSEI 16326, SIMS 1368, MOSI 1284 clips), not
read back from the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.config import TrainConfig, get_preset
from models.nn.interface import Output
from models.training.loop import parameter_groups
from models.training.schedule import epoch_schedule, lr_at_step

# preset → (train clips, E = cosine_period_epochs) of the reference configs
TRAIN_SIZES = {"mosei": (16326, 15), "mosei-large": (16326, 20), "sims": (1368, 100), "mosi": (1284, 150)}
# floor(ceil(N / 32) / 8): 511 → 63, 43 → 5, 41 → 5 optimizer steps
EXPECTED_STEPS = {"mosei": 63, "mosei-large": 63, "sims": 5, "mosi": 5}


def _reference_lr(k: int, base: float, eta_min: float, warmup: int, period: int) -> float:
    """The reference: linear warm-up base·k/W, then CosineAnnealingWarmRestarts(T_0, T_mult=1)."""
    if k < warmup:
        return base * k / warmup
    t = (k - warmup) % period
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


@pytest.mark.parametrize("name", list(TRAIN_SIZES))
def test_steps_warmup_and_restart_period_per_preset(name):
    n, period_epochs = TRAIN_SIZES[name]
    train = TrainConfig.from_dict(get_preset(name).train)
    assert train.cosine_period_epochs == period_epochs and (train.batch_size, train.grad_accum) == (32, 8)
    steps, warmup, period = epoch_schedule(
        n, train.batch_size, train.grad_accum, train.warmup_epochs, train.cosine_period_epochs
    )
    assert steps == EXPECTED_STEPS[name] == math.ceil(n / 32) // 8
    assert warmup == steps  # one warm-up epoch
    assert period == (period_epochs + 1) * steps - warmup


@pytest.mark.parametrize("name", list(TRAIN_SIZES))
def test_lr_of_the_first_100_steps_and_around_the_first_restart(name):
    n, period_epochs = TRAIN_SIZES[name]
    steps = EXPECTED_STEPS[name]
    warmup, period = steps, (period_epochs + 1) * steps - steps
    train = TrainConfig.from_dict(get_preset(name).train)
    got = [lr_at_step(k, train.lr, train.min_lr, *epoch_schedule(n, 32, 8, 1.0, period_epochs)[1:]) for k in range(100)]
    assert got == pytest.approx([_reference_lr(k, 1e-4, 1e-7, warmup, period) for k in range(100)], rel=1e-12)
    assert got[0] == 0.0 and got[1] == pytest.approx(1e-4 / steps)
    restart = warmup + period  # the first warm restart: back at the peak
    for k in (restart - 2, restart - 1, restart, restart + 1):
        assert lr_at_step(k, 1e-4, 1e-7, warmup, period) == pytest.approx(
            _reference_lr(k, 1e-4, 1e-7, warmup, period), rel=1e-12
        )
    assert lr_at_step(restart, 1e-4, 1e-7, warmup, period) == pytest.approx(1e-4)
    assert lr_at_step(restart - 1, 1e-4, 1e-7, warmup, period) < 1e-7 + 1e-9


class _Linear(nn.Module):
    """A one-weight model on the first audio feature, with the interface `fit` needs."""

    kind = "linear"

    def __init__(self):
        super().__init__()
        self.w = nn.Linear(1, 1)
        self.config = get_preset("sample").model_config()

    def forward(self, batch, compute_loss=True):
        pred = self.w(batch.audio[:, 0, :1]).squeeze(-1)  # (B,)
        return Output(pred, pred, pred, pred[:, None], ((pred - batch.labels) ** 2).mean())

    def trainable_state_dict(self):
        return self.state_dict()


def test_remainder_batches_run_but_make_no_partial_step(monkeypatch, tmp_path):
    """41 batches with grad_accum 8: 5 optimizer steps, the last batch runs forward/backward but never steps."""
    from models.training import loop

    calls = {"forward": 0, "step": 0}

    class Counted(_Linear):
        def forward(self, batch, compute_loss=True):
            calls["forward"] += self.training
            return super().forward(batch, compute_loss)

    real_step = torch.optim.AdamW.step

    def counting_step(self, *a, **k):
        calls["step"] += 1
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting_step)
    from procedure_helpers import tiny_split

    train, valid = tiny_split(1284), tiny_split(8)
    config = TrainConfig(batch_size=32, grad_accum=8, max_epochs=1, patience=2, prefix_cache_gib=0)
    result = loop.fit(Counted(), train, valid, config, "mosi", tmp_path, seed=0, device="cpu")
    assert calls["step"] == 5
    assert calls["forward"] == 41  # every training batch ran, the remainder one too
    assert result.history[0]["lr"] == pytest.approx(1e-4 * 4 / 5)  # the fifth step, k = 4 of W = 5


def test_fit_refuses_a_split_too_small_for_one_step(tmp_path):
    from models.errors import ConfigError
    from models.training import loop

    from procedure_helpers import tiny_split

    with pytest.raises(ConfigError, match="grad_accum=8"):
        loop.fit(
            nn.Linear(1, 1),
            tiny_split(64),
            tiny_split(8),
            TrainConfig(batch_size=32, grad_accum=8),
            "mosi",
            tmp_path,
            seed=0,
            device="cpu",
        )


def test_only_parameters_named_bias_escape_weight_decay():
    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.fusion_tokens = nn.Parameter(torch.zeros(4, 8))
            self.ln_f = nn.LayerNorm(8)
            self.gate = nn.Parameter(torch.zeros(1))
            self.proj = nn.Linear(8, 8)
            self.frozen = nn.Parameter(torch.zeros(2), requires_grad=False)

    model = Named()
    decay, no_decay = parameter_groups(model, 0.005)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["fusion_tokens", "gate", "ln_f.weight", "proj.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == ["ln_f.bias", "proj.bias"]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.005, 0.0)


def test_deepmlf_decays_its_norms_gates_and_fusion_tokens_but_not_its_biases(tiny_gpt2):
    """The rule on a real DeepMLF's parameter names: only names containing "bias" escape decay."""
    from models.config import ModelConfig
    from models.nn.deepmlf import DeepMLF

    model = DeepMLF.from_config(
        ModelConfig(lm=str(tiny_gpt2), mm_layers=(1, 3), n_fusion=4, d_audio=7, d_vision=5, av_pool_len=10)
    )[0]
    decay, no_decay = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert {
        "fusion_tokens",
        "mm_blocks.1.ln_ca.weight",
        "mm_blocks.1.gate_ca.alpha",
        "mm_blocks.3.gate_ffw.alpha",
        "mm_blocks.3.ln_ffw.weight",
        "mm_blocks.3.ffw.c_fc.weight",
        "task_head.net.1.weight",
        "av_encoder.audio.encoder.layers.0.norm1.weight",
    } <= decayed
    assert {
        "mm_blocks.1.ln_ca.bias",
        "mm_blocks.1.ffw.c_fc.bias",
        "task_head.net.3.bias",
        "av_encoder.audio.encoder.layers.0.self_attn.in_proj_bias",
    } <= exempt
    assert all("bias" in n for n in exempt) and not any("bias" in n for n in decayed)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decayed | exempt == trainable and not any(n.startswith("lm.") for n in trainable)  # the LM is frozen


# --- item 6: the LM loss's targets --------------------------------------------------------------


def _gpt2_like_tokenizer():
    """A word-level tokenizer with GPT-2's special-token layout: EOS 50256, no pad, nothing added."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"good": 922, "movie": 3807, "really": 1107, "bad": 2089, "<|endoftext|>": 50256}
    word = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    word.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=word, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


def _chinese_bert_tokenizer():
    """bert-base-chinese's layout ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102), as SIMS's GPT-2 uses."""
    from transformers import BertTokenizer

    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "好", "看"]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})


def _targets_per_row(tokenizer, texts, max_tokens):
    """{row: [(token, its target), ...]} of the LM loss, for `texts` encoded and collated as training does."""
    import numpy as np

    from models.data.batching import collate, encode_split
    from models.data.types import SplitData
    from models.nn.deepmlf import lm_targets

    n = len(texts)
    split = SplitData(
        [f"c{i}" for i in range(n)],
        list(texts),
        np.zeros((n, 1, 1), np.float32),
        np.zeros((n, 1, 1), np.float32),
        np.ones(n, np.int64),
        np.ones(n, np.int64),
        np.zeros(n, np.float32),
    )
    batch = collate(encode_split(split, tokenizer, max_tokens, None), np.arange(n))
    positions, targets = lm_targets(batch)
    T = batch.text_ids.shape[1]
    rows: dict[int, list[tuple[int, int]]] = {}
    for p, t in zip(positions.tolist(), targets.tolist()):
        rows.setdefault(p // T, []).append((int(batch.text_ids[p // T, p % T]), t))
    return rows


def test_lm_targets_of_a_gpt2_row_end_with_eos():
    rows = _targets_per_row(_gpt2_like_tokenizer(), ["good movie", "really really bad movie"], 50)
    assert rows[0] == [(922, 3807), (3807, 50256)]  # the last real token predicts EOS (GPT-2's pad)
    assert rows[1] == [(1107, 1107), (1107, 2089), (2089, 3807), (3807, 50256)]


def test_lm_targets_of_a_sims_row_end_with_pad_after_sep():
    rows = _targets_per_row(_chinese_bert_tokenizer(), ["好看", "好"], 39)
    assert rows[0] == [(101, 104), (104, 105), (105, 102), (102, 0)]  # [CLS] 好 看 [SEP] → … [PAD]
    assert rows[1] == [(101, 104), (104, 102), (102, 0)]


def test_lm_target_of_a_truncated_row_is_id_0():
    rows = _targets_per_row(_gpt2_like_tokenizer(), ["good movie really bad", "bad"], 3)
    assert rows[0] == [(922, 3807), (3807, 1107), (1107, 0)]  # cut at 3 tokens: nothing follows, id 0
    assert rows[1] == [(2089, 50256)]  # one real token: its only target is EOS


# --- item 4: precision per preset (the reference's use_bf16) -------------------------------------


@pytest.mark.parametrize("name, use_bf16", [("mosei", False), ("mosei-large", False), ("sims", False), ("mosi", True)])
def test_the_preset_decides_the_precision_on_cuda(name, use_bf16):
    from models.devices import resolve_lm_dtype

    train = TrainConfig.from_dict(get_preset(name).train)
    cuda = torch.device("cuda")  # a device name only: nothing runs on it
    assert resolve_lm_dtype(train.lm_dtype, cuda) == (torch.bfloat16 if use_bf16 else torch.float32)
    assert resolve_lm_dtype(train.lm_dtype, torch.device("cpu")) == torch.float32  # every preset: fp32 on a CPU


def test_autocast_follows_the_lm_dtype_not_the_device():
    """An fp32 model on CUDA computes in fp32 (use_bf16 false); bf16 autocast only with bf16 weights."""
    from models.devices import model_autocast

    fp32, bf16 = nn.Linear(2, 2), nn.Linear(2, 2).to(torch.bfloat16)
    assert not model_autocast(fp32, torch.device("cuda"))
    assert model_autocast(bf16, torch.device("cuda")) and model_autocast(bf16, torch.device("cpu"))


def test_bf16_on_an_fp32_preset_is_an_opt_in_the_run_spec_records():
    from deepmlf_cli.resolve import build_spec

    class Dataset:
        name, scheme, d_audio, d_vision, splits = "sims", "sims", 33, 709, {}

    default, _ = build_spec("deepmlf", Dataset(), "sims", None, {}, {})
    chosen, _ = build_spec("deepmlf", Dataset(), "sims", None, {}, {"lm_dtype": "bfloat16"})
    assert default.train.lm_dtype == "float32"
    assert chosen.train.lm_dtype == "bfloat16" and chosen.to_dict()["train"]["lm_dtype"] == "bfloat16"


# --- item 11: model selection ------------------------------------------------------------------


def test_selection_score_is_a_rounded_mean_of_batch_means():
    import numpy as np

    from models.training.loop import improves, selection_score

    labels = np.zeros(5)
    pred = np.array([0.1, 0.3, 0.2, 0.2, 0.9])  # batches of 2: means 0.2, 0.2, 0.9 → 0.43333…
    assert selection_score(pred, labels, 2, "reference") == 0.4333
    assert selection_score(pred, labels, 2, "l1") == pytest.approx(0.34)  # 1.7 / 5
    assert not improves(0.4333, 0.4333, "reference") and not improves(0.4333, 0.4333 + 1e-6, "reference")
    assert improves(0.4332, 0.4333, "reference") and improves(0.4333, 0.43331, "l1")
    assert not improves(float("nan"), float("inf"), "reference")


def test_fit_keeps_the_first_of_two_epochs_equal_after_rounding(monkeypatch, tmp_path):
    """Validation L1 0.50000, 0.49996 (rounds to 0.5000: no new best), 0.49970: the best epochs are 0 and 2."""
    import numpy as np

    from models.training import loop

    from procedure_helpers import tiny_split

    valid = tiny_split(8)
    errors = iter([0.5, 0.49996, 0.4997])

    def fake_predict(model, encoded, batch_size, device):
        return {"prediction": encoded.labels + next(errors)}

    monkeypatch.setattr(loop, "predict_encoded", fake_predict)
    config = TrainConfig(batch_size=4, grad_accum=1, max_epochs=3, patience=5, prefix_cache_gib=0)
    result = loop.fit(_Linear(), tiny_split(8), valid, config, "mosi", tmp_path, seed=0, device="cpu")
    assert [h["best"] for h in result.history] == [True, False, True]
    assert [h["valid_score"] for h in result.history] == [0.5, 0.5, 0.4997]
    assert result.best_epoch == 2 and np.isclose(result.history[1]["valid_l1"], 0.49996)


# --- item 5 and "Exact speed": window batching -------------------------------------------------


def _steps(batches, grad_accum, world):
    """Each optimizer step's clip set (all ranks together), from an epoch's micro-batch list."""
    from models.distributed import shard_batches

    shares = [shard_batches(batches, rank, world) for rank in range(world)]
    n_steps = len(shares[0]) // grad_accum
    return [
        sorted(int(c) for share in shares for b in share[s * grad_accum : (s + 1) * grad_accum] for c in b)
        for s in range(n_steps)
    ]


@pytest.mark.parametrize("world", [1, 2])
def test_window_batching_gives_every_step_the_clips_shuffle_gives_it(world):
    """MOSI's 1284 clips, batch 32 × 8: 41 micro-batches, 5 steps (2 ranks: 21 each, 2 steps)."""
    import numpy as np

    from models.data.batching import training_batches

    from procedure_helpers import tiny_split

    train = tiny_split(1284, max_tokens=50)
    lengths = np.array([len(t) for t in train.token_ids])
    cut = {
        mode: training_batches(train, 32, 8 * world, np.random.default_rng([0, 3]), mode)
        for mode in ("window", "shuffle", "bucketed")
    }
    window, shuffle = cut["window"][0], cut["shuffle"][0]
    assert len(window) == len(shuffle) == 41 and [len(b) for b in window] == [32] * 40 + [4]
    steps = _steps(window, 8, world)
    assert len(steps) == {1: 5, 2: 2}[world]
    assert steps == _steps(shuffle, 8, world)  # the same clips in every optimizer step
    assert _steps(cut["bucketed"][0], 8, world) != steps  # global buckets move clips between steps
    np.testing.assert_array_equal(window[-1], shuffle[-1])  # the short last batch: shuffle's own clips

    def padding(batches):
        return 1 - sum(lengths[b].sum() for b in batches) / sum(len(b) * lengths[b].max() for b in batches)

    assert padding(window) < 0.2 < 0.4 < padding(shuffle)  # uniform lengths 1..50: ~49 % padding shuffled
    # Regrouped micro-batches divide by their window's means: 32 clips, and its LM targets / 8 (or 16).
    norms = cut["window"][1]
    first = np.concatenate(window[: 8 * world])
    assert norms[0] == (32.0, lengths[first].sum() / (8 * world)) and norms[-1] is None


def _summed_gradient(model, train, batches, norms):
    from models.data.batching import collate

    model.zero_grad(set_to_none=True)
    for index, norm in zip(batches, norms):
        model(collate(train, index, norm)).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _window_and_shuffle_gradients(lm_dir, lambda_lm: float):
    """One optimizer step (3 micro-batches of 4) of a tiny DeepMLF in eval mode (BatchNorm, dropout and
    SeqAug off): (window's summed gradient, shuffle's with its own divisors, shuffle's grouping with the
    window's divisors)."""
    import numpy as np

    from models.config import ModelConfig
    from models.data.batching import encode_split, training_batches
    from models.data.types import SplitData
    from models.nn.deepmlf import DeepMLF

    torch.manual_seed(0)
    model, tok = DeepMLF.from_config(
        ModelConfig(
            lm=str(lm_dir),
            mm_layers=(2, 3),
            n_fusion=3,
            d_audio=3,
            d_vision=2,
            av_pool_len=4,
            lambda_lm=lambda_lm,
            lm_dropout=False,
        )
    )
    model.eval()
    rng = np.random.default_rng(0)
    words = "the movie was great and i loved it what a wonderful day terrible acting boring story".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 14)))) for _ in range(12)]
    split = SplitData(
        [f"c{i}" for i in range(12)],
        texts,
        rng.normal(size=(12, 5, 3)).astype(np.float32),
        rng.normal(size=(12, 4, 2)).astype(np.float32),
        rng.integers(1, 6, 12),
        rng.integers(1, 5, 12),
        rng.uniform(-1, 1, 12).astype(np.float32),
    )
    train = encode_split(split, tok, 32, None)
    window, norms = training_batches(train, 4, 3, np.random.default_rng([0, 0]), "window")
    shuffle, own = training_batches(train, 4, 3, np.random.default_rng([0, 0]), "shuffle")
    assert [sorted(b.tolist()) for b in window] != [sorted(b.tolist()) for b in shuffle]  # regrouped
    return (
        _summed_gradient(model, train, window, norms),
        _summed_gradient(model, train, shuffle, own),
        _summed_gradient(model, train, shuffle, norms),
    )


def _assert_same_gradients(got, want):
    assert got.keys() == want.keys() and len(got) > 10
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-5, msg=name)


def test_window_batching_sums_the_same_gradient_as_shuffle(tiny_gpt2):
    """Without the LM loss (MOSI's lambda_lm 0) and in eval mode, the window's regrouped step sums
    shuffle's gradient to 1e-5."""
    window, shuffle, _ = _window_and_shuffle_gradients(tiny_gpt2, 0.0)
    _assert_same_gradients(window, shuffle)


def test_with_the_lm_loss_the_windows_gradient_does_not_depend_on_its_grouping(tiny_gpt2):
    """With the LM loss the window divides by its mean target count per micro-batch, so its gradient is
    the same under any grouping of its clips (shuffle's grouping with the window's divisors), but not
    shuffle's own: the reference divides each micro-batch by its own count (docs/recipe.md declares it)."""
    window, shuffle, shuffle_grouping = _window_and_shuffle_gradients(tiny_gpt2, 0.7)
    _assert_same_gradients(window, shuffle_grouping)
    with pytest.raises(AssertionError):
        _assert_same_gradients(window, shuffle)


# --- describe shows every item -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TRAIN_SIZES))
def test_describe_json_shows_every_procedure_item(name):
    import json

    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    res = CliRunner().invoke(app, ["describe", "--preset", name, "--json"])
    assert res.exit_code == 0, res.output
    recipe = json.loads(res.output)
    train, rules = recipe["train"], recipe["procedure"]
    assert (train["batching"], train["selection"], train["decay_groups"]) == ("window", "reference", "non-bias")
    assert train["lm_dtype"] == ("auto" if name == "mosi" else "float32")
    assert "floor(micro-batches / 8)" in rules["steps_per_epoch"] and "0.0001·k/W" in rules["warmup"]
    assert (
        rules["batching"].startswith("window: ")
        and "use_bf16: " + ("true" if name == "mosi" else "false") in rules["precision"]
    )
    assert "rounded to 4 decimals" in rules["selection"] and "lacks 'bias'" in rules["decay_groups"]
    assert ("id 0 when the transcript fills" in rules["lm_targets"]) == (name != "mosi")
    pretrain = recipe["pretrain"]
    assert (pretrain["train"]["batching"], pretrain["train"]["decay_groups"]) == ("shuffle", "all")
    assert "after every micro-batch's backward" in pretrain["procedure"]["clipping"]
    assert any("use_ulgm" in note for note in recipe["notes"]) == (name == "mosi")
    # The step counts at the paper's train size: 511 / 43 / 41 micro-batches (16326, 1368, 1284 clips).
    clips, period_epochs = TRAIN_SIZES[name]
    steps = EXPECTED_STEPS[name]
    micro = {"mosei": 511, "mosei-large": 511, "sims": 43, "mosi": 41}[name]
    assert rules["at_train_size"] == (
        f"{clips} training clips on one process: {micro} micro-batches, {steps} optimizer steps an epoch, "
        f"W = {steps}, T_0 = {(period_epochs + 1) * steps - steps}"
    )
    assert pretrain["procedure"]["at_train_size"].endswith(f"{micro // 4} optimizer steps an epoch")
    assert pretrain["procedure"]["readout"].startswith("last: clf(fusion(cat)[:, -1])")
    assert "fresh LayerNorm and AV head" in pretrain["procedure"]["readout"]
    # What window batching still changes against shuffle, as docs/recipe.md lists it.
    assert all(w in rules["batching"] for w in ("BatchNorm", "LM loss's divisor", "dropout and SeqAug"))
    # How the model starts (items 7-10): the FFW copy, MLP form, LoRA A, BatchNorm placement, positions.
    model = recipe["model_rules"]
    assert model["ffw_init"].startswith("reference: ") and "nn.GELU (erf form)" in model["ffw_init"]
    assert model["mlp_form"].startswith("reference: ") and "up(x)), the reference's sum" in model["mlp_form"]
    assert ("lora_init" in model) == (name == "mosi")
    if name == "mosi":
        assert "A ~ U(±1/√r)" in model["lora_init"] and "B = 0" in model["lora_init"]
    both = "BatchNorm on audio and vision after the length-aware pooling"
    assert model["av_batchnorm"] == (both if name == "sims" else "none")
    # Pretraining shows the AV rules where its own differ: MOSI's audio BatchNorm (stage 2 has none).
    pretrain_batchnorm = {"mosi": "BatchNorm on audio after the length-aware pooling"}.get(name)
    assert pretrain["procedure"].get("av_batchnorm") == pretrain_batchnorm
    assert model["av_positions"].startswith("fairseq: [sin | cos] halves")
