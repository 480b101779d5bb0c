"""Fusion baselines and unimodal models: forward passes, the late-fusion vote, training through train_run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.config import ModelConfig
from models.data.text import collate_text
from models.evaluation.metrics import polarity_classes
from models.nn.baselines import BASELINE_KINDS, late_vote, vote_classes
from models.nn.interface import Batch
from models.nn.lm import load_causal_lm
from models.nn.registry import MODEL_KINDS, build_model, needs_text

from conftest import make_batch


@pytest.fixture(scope="module")
def lm_and_tokenizer(tiny_gpt2):
    return load_causal_lm(str(tiny_gpt2))


@pytest.mark.parametrize("kind", sorted(BASELINE_KINDS))
def test_forward_backward_and_checkpoint_tensors(kind, lm_and_tokenizer, tiny_gpt2):
    assert kind in MODEL_KINDS and needs_text(kind) == (kind not in ("audio", "vision"))
    hf_lm, tok = lm_and_tokenizer
    config = ModelConfig(
        lm=str(tiny_gpt2), d_audio=7, d_vision=5, av_pool_len=10, max_text_tokens=32, av_input_batchnorm=True
    )
    torch.manual_seed(0)
    model = build_model(kind, config, hf_lm if needs_text(kind) else None)
    batch = make_batch(tok)
    model.train()
    out = model(batch)
    assert out.prediction.shape == (4,) and torch.isfinite(out.prediction).all()
    assert torch.isfinite(out.loss)
    out.loss.backward()
    state = model.trainable_state_dict()
    assert state and not any(name.startswith("lm.") for name in state)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("lm.") for n in trainable)
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("lm."))
    if kind == "late":
        assert out.fusion.shape == (4, 3) and set(out.terms) == {"text", "audio", "vision"}
        torch.testing.assert_close(out.prediction, late_vote(out.fusion.detach()))
    else:
        assert out.fusion.shape == (4, 0)
    model.eval()
    with torch.no_grad():
        batched = model(batch, compute_loss=False).prediction
        # A clip alone (re-padded to its own length) gets the same prediction as in the batch.
        i = 1
        n = int(batch.text_valid[i].sum())
        ids, valid = collate_text([batch.text_ids[i, -n:].tolist()], tok.pad_token_id)
        alone = Batch(
            ids,
            valid,
            batch.audio[i : i + 1, :5],
            batch.audio_lengths[i : i + 1],
            batch.vision[i : i + 1],
            batch.vision_lengths[i : i + 1],
        )
        torch.testing.assert_close(
            model(alone, compute_loss=False).prediction, batched[i : i + 1], rtol=1e-4, atol=1e-5
        )
    # LM stays in eval mode while the model trains.
    model.train()
    if hasattr(model, "lm"):
        assert not model.lm.training


def test_late_vote_on_hand_made_predictions():
    preds = torch.tensor(
        [
            [0.5, 0.9, -0.6],  # pos, pos, neg → pos: mean(0.5, 0.9)
            [-0.5, 0.0, -0.3],  # neg, neutral, neg → neg: mean(-0.5, -0.3)
            [0.05, -0.05, 2.0],  # neutral, neutral, pos → neutral: mean(0.05, -0.05)
            [-1.0, 0.02, 1.0],  # one of each: no majority → neutral voter's 0.02
            [-0.1, 0.1, 0.3],  # -0.1 is negative and 0.1 neutral (right-closed bins) → 1-1-1 → 0.1
            [2.0, 3.0, 1.0],  # unanimous → mean
        ]
    )
    expected = torch.tensor([0.7, -0.4, 0.0, 0.02, 0.1, 2.0])
    torch.testing.assert_close(late_vote(preds), expected)
    # The score maps back to the majority class.
    assert vote_classes(late_vote(preds)).tolist() == [2, 0, 1, 1, 1, 2]


def test_three_class_mapping():
    values = np.array([-2.0, -0.1, -0.05, 0.0, 0.1, 0.10001, 3.0], dtype=np.float32)
    # SIMS bins: (-1.01,-0.1] / (-0.1,0.1] / (0.1,1.01]; the vote uses the same bins.
    assert polarity_classes(values, "sims").tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert vote_classes(torch.from_numpy(values)).tolist() == [0, 0, 1, 1, 1, 2, 2]
    # MOSI: < 0 / == 0 / > 0.
    assert polarity_classes(values, "mosi").tolist() == [0, 0, 0, 1, 2, 2, 2]


@pytest.fixture(scope="module")
def tiny_sample(tmp_path_factory):
    from models.data.format import save_dataset
    from models.data.load import load_dataset
    from models.data.sample import make_sample_dataset

    path = save_dataset(
        make_sample_dataset(n_train=64, n_valid=32, n_test=32), tmp_path_factory.mktemp("sample") / "sample"
    )
    return load_dataset(str(path))


@pytest.mark.slow
def test_baselines_train_evaluate_and_reload(tiny_sample, tiny_gpt2, lm_and_tokenizer, tmp_path):
    import dataclasses

    from models.config import PRESETS, TrainConfig
    from models.evaluation.evaluate import evaluate_checkpoint
    from models.run import RunSpec
    from models.training.experiment import train_run

    preset = PRESETS["sample"]
    config = preset.model_config(lm=str(tiny_gpt2), av_layers=1)
    train = TrainConfig.from_dict({**preset.train, "max_epochs": 1})
    for kind in ("late", "audio"):  # one reading text through the LM, one without it
        spec = RunSpec(kind=kind, model=config, train=dataclasses.replace(train), seeds=(0,))
        results = train_run(tiny_sample, spec, tmp_path / kind, hf_lm_and_tokenizer=lm_and_tokenizer)
        assert np.isfinite(results["mean"]["MAE"])
        metrics, _ = evaluate_checkpoint(tmp_path / kind / "seed_0" / "best", tiny_sample)
        assert metrics["MAE"] == pytest.approx(results["mean"]["MAE"], abs=1e-5)


def test_each_kind_declares_its_modalities_and_heads_and_a_new_family_is_one_class(lm_and_tokenizer, tiny_gpt2):
    """A kind is a class (name, modalities, settings, fusion); one with a setting of its own leaves ModelConfig be."""
    import dataclasses

    from models.nn.baselines import BASELINES, BaselineModel, BaselineSettings, Unimodal
    from models.nn.interface import Output

    hf_lm, tok = lm_and_tokenizer
    config = ModelConfig(lm=str(tiny_gpt2), d_audio=7, d_vision=5, av_pool_len=10, max_text_tokens=32)
    assert {kind: cls.modalities for kind, cls in BASELINES.items()} == {
        "early": ("text", "audio", "vision"),
        "late": ("text", "audio", "vision"),
        "attention": ("text", "audio", "vision"),
        "text": ("text",),
        "audio": ("audio",),
        "vision": ("vision",),
    }
    batch = make_batch(tok)
    for kind in ("text", "audio"):  # a unimodal model's prediction is its own head's, the other head is absent
        model = build_model(kind, config, hf_lm if kind == "text" else None).eval()
        assert isinstance(model, Unimodal) and model.kind == kind
        with torch.no_grad():
            out = model(batch, compute_loss=False)
        own, other = (out.text, out.av) if kind == "text" else (out.av, out.text)
        torch.testing.assert_close(own, out.prediction)
        assert torch.isnan(other).all() and out.fusion.shape == (4, 0)

    @dataclasses.dataclass(frozen=True)
    class ScaledSettings(BaselineSettings):
        scale: float = 0.5  # a setting no other family has, with its default

    class ScaledAV(BaselineModel):
        kind = "scaled-av"
        modalities = ("audio", "vision")
        Settings = ScaledSettings

        def fuse(self, states):
            features = torch.cat([states[m] for m in self.modalities], dim=-1)  # (B, 2d)
            return Output.of(self.head(features).float() * self.settings.scale)

    assert not hasattr(config, "scale")
    torch.manual_seed(0)
    model = ScaledAV(config, None)
    assert model.settings.scale == 0.5 and model.settings.d_av == config.d_av and not hasattr(model, "text")
    out = model(batch)
    assert torch.isfinite(out.loss) and set(out.terms) == {"task"}
    assert torch.isnan(out.text).all() and torch.isnan(out.av).all() and out.fusion.shape == (4, 0)
    with pytest.raises(Exception, match="reads text: it needs the frozen LM"):
        build_model("early", config, None)
