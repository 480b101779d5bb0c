"""The switches that undo our deliberate deviations from the reference one at a time
(docs/recipe.md, "Where we deviate on purpose"), and `deepmlf study deviations` that measures them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.config import PRESETS, TrainConfig
from models.data.normalize import FeatureNormalizer
from models.data.sample import make_sample_dataset
from models.errors import ConfigError
from models.nn.fusion import CrossAttention
from models.training.studies import study_variants


def _attention(attention_dropout: bool) -> CrossAttention:
    torch.manual_seed(0)
    return CrossAttention(16, 6, 4, dropout=0.5, attention_dropout=attention_dropout).train()


def test_attention_dropout_off_drops_only_after_the_output_projection():
    x, context = torch.randn(2, 3, 16), torch.randn(2, 5, 6)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    module = _attention(attention_dropout=False)
    with torch.no_grad():
        torch.manual_seed(1)
        got = module(x, context, valid)
        # The same mask after W_o (SDPA without dropout draws no random numbers), no dropout before it.
        q = module.q(x).view(2, 3, 4, 4).transpose(1, 2)
        torch.manual_seed(1)
        expected = module.out_dropout(module.o(module._attend(q, context, valid).transpose(1, 2).reshape(2, 3, 16)))
        torch.manual_seed(1)
        ours = _attention(attention_dropout=True)(x, context, valid)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(ours, expected)  # our default also drops attention weights


def test_raw_features_keep_their_values_and_a_later_z_scoring_refits():
    split = make_sample_dataset(n_train=24, n_valid=8, n_test=8).splits["train"]
    raw_audio = split.audio.copy()
    identity = FeatureNormalizer.identity(split)
    assert identity.is_identity()
    identity.apply(split, in_place=True)
    np.testing.assert_array_equal(split.audio, raw_audio)
    # A study trains a "none" variant and then a "zscore" one on the same dataset object:
    # the z-scoring must be fitted on the raw values, not taken from the identity the split remembers.
    fitted = FeatureNormalizer.fit(split)
    assert not fitted.is_identity()
    valid = np.arange(split.audio.shape[1])[None, :] < split.audio_lengths[:, None]
    np.testing.assert_allclose(fitted.audio_mean, raw_audio[valid].mean(0), rtol=1e-4, atol=1e-5)


def test_the_switches_are_validated():
    with pytest.raises(ConfigError, match="feature_scaling='minmax'; choose one of: zscore, none"):
        TrainConfig(feature_scaling="minmax")
    with pytest.raises(ConfigError, match="text_padding='longest'; choose one of: batch, fixed"):
        TrainConfig(text_padding="longest")


def test_deviations_study_undoes_each_deviation_alone():
    variants = study_variants("deviations", PRESETS["sample"].model_config(), 4)
    changed = {v.name: {**v.model_overrides, **v.train_overrides} for v in variants}
    assert changed == {
        "ours": {},
        "attention-weight dropout off": {"mm_attention_dropout": False},
        "raw features (no z-scoring)": {"feature_scaling": "none"},
        "fixed text padding": {"text_padding": "fixed"},
        "shuffle batching": {"batching": "shuffle"},
    }


def test_deviations_study_trains_each_switch_as_it_says(tmp_path, tiny_gpt2):
    from models.data.format import save_dataset

    data_dir = save_dataset(make_sample_dataset(n_train=32, n_valid=16, n_test=16), tmp_path / "sample")
    out = tmp_path / "study"
    # Transcripts cut at 48 tokens, past the longest here (38): a fixed pad then differs from the batch's own.
    config = tmp_path / "longer.toml"
    config.write_text('preset = "sample"\n[model]\nmax_text_tokens = 48\n')
    args = ["study", "deviations", "--dataset", str(data_dir), "--config", str(config), "--lm", str(tiny_gpt2)]
    args += ["--epochs", "1", "--device", "cpu", "--out", str(out), "--quiet", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {r["dir"]: r for r in json.loads(result.output)["rows"]}
    assert rows["raw-features-no-z-scoring"]["train_overrides"] == {"feature_scaling": "none"}

    def spec(directory: str) -> dict:
        return json.loads((out / directory / "run.json").read_text())["spec"]

    def padding(directory: str) -> float:
        return json.loads((out / directory / "seed_0" / "history.json").read_text())[0]["text_padding"]

    assert spec("shuffle-batching")["train"]["batching"] == "shuffle"
    assert spec("attention-weight-dropout-off")["model"]["mm_attention_dropout"] is False
    # Fixed padding pads every batch to max_text_tokens: far more padding than the batch's own longest.
    assert padding("fixed-text-padding") > padding("ours") + 0.05
    # Raw features: the checkpoint's normaliser is the identity, so predict feeds raw values too.
    from safetensors.torch import load_file

    raw = load_file(str(out / "raw-features-no-z-scoring" / "seed_0" / "best" / "model.safetensors"))
    ours = load_file(str(out / "ours" / "seed_0" / "best" / "model.safetensors"))
    stats = [k for k in raw if k.endswith("audio_std")]
    assert stats and all(torch.equal(raw[k], torch.ones_like(raw[k])) for k in stats)
    assert not all(torch.equal(ours[k], torch.ones_like(ours[k])) for k in stats)
