"""DeepMLF model behaviour on tiny offline LMs (GPT-2 and Llama families)."""

from __future__ import annotations

import json

import pytest
import torch

from models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from models.config import PRESETS, ModelConfig, parse_layer_list
from models.data.text import collate_text
from models.errors import ConfigError
from models.nn.av_encoder import pool_to_grid, pooled_lengths
from models.nn.deepmlf import DeepMLF
from models.nn.interface import Batch, Output

from conftest import make_batch


def make_model(lm_dir, **overrides):
    fields = dict(lm=str(lm_dir), mm_layers=(1, 3), n_fusion=4, d_audio=7, d_vision=5, av_pool_len=10)
    config = ModelConfig(**{**fields, **overrides})
    return DeepMLF.from_config(config)


def single(batch: Batch, i: int, tokenizer) -> Batch:
    """Row i alone, re-padded to its own length (as a one-clip prediction would be)."""
    n = int(batch.text_valid[i].sum())
    ids, valid = collate_text([batch.text_ids[i, -n:].tolist()], tokenizer.pad_token_id)
    return Batch(
        ids,
        valid,
        batch.audio[i : i + 1, : int(batch.audio_lengths[i]) or 1],
        batch.audio_lengths[i : i + 1],
        batch.vision[i : i + 1, : int(batch.vision_lengths[i]) or 1],
        batch.vision_lengths[i : i + 1],
    )


def forward_recording_final_norm(model: DeepMLF, batch: Batch) -> tuple[Output, torch.Tensor]:
    """model(batch) through its own forward pass, and the hidden states its final norm returned
    there (B, T+n_f, d): the text rows' vocabulary logits are the LM head of these."""
    seen = []
    final_norm = model.lm.final_norm

    def recording(hidden):
        seen.append(final_norm(hidden))
        return seen[-1]

    model.lm.final_norm = recording  # an instance attribute: forward calls it as self.lm.final_norm
    try:
        out = model(batch, compute_loss=False)
    finally:
        del model.lm.final_norm
    assert len(seen) == 1
    return out, seen[0]


@pytest.mark.parametrize("queries", ["fusion", "both"])
def test_closed_tanh_gates_give_the_frozen_lm_logits(tiny_lm, queries):
    """Through DeepMLF.forward: tanh gates at α=0 make every MM block the identity, so the text rows
    carry the frozen LM's logits and every head reads what it reads without any MM block."""
    model, tok = make_model(tiny_lm, gating="tanh", fusion_inputs=queries, ffw_init="copy-lm")
    model.eval()
    batch = make_batch(tok, ["the movie was great and i loved it"])
    T = batch.text_ids.shape[1]
    with torch.no_grad():
        out, normed = forward_recording_final_norm(model, batch)
        lm_logits = model.lm.model(input_ids=batch.text_ids).logits  # (1, T, V)
        torch.testing.assert_close(model.lm.lm_head(normed[:, :T]), lm_logits, rtol=0, atol=1e-5)
        model.mm_blocks = torch.nn.ModuleDict()  # the same forward pass with no MM block at all
        without = model(batch, compute_loss=False)
    for head in ("prediction", "text", "av", "fusion"):
        torch.testing.assert_close(getattr(out, head), getattr(without, head), rtol=0, atol=1e-5)


def test_open_gates_change_the_text_logits(tiny_gpt2):
    """The check above can fail: with sigmoid gates (0.5) the FFW branch moves the text tokens."""
    model, tok = make_model(tiny_gpt2, gating="sigmoid")
    model.eval()
    batch = make_batch(tok, ["the movie was great and i loved it"])
    T = batch.text_ids.shape[1]
    with torch.no_grad():
        out, normed = forward_recording_final_norm(model, batch)
        lm_logits = model.lm.model(input_ids=batch.text_ids).logits
    assert out.prediction.shape == (1,)
    assert not torch.allclose(model.lm.lm_head(normed[:, :T]), lm_logits, rtol=0, atol=1e-3)


def test_lm_loss_matches_the_frozen_lm_when_gates_are_closed(tiny_lm):
    model, tok = make_model(tiny_lm, gating="tanh", ffw_init="copy-lm")
    model.eval()
    batch = make_batch(tok, ["i really hated the service it was awful"])
    with torch.no_grad():
        out = model(batch)
        reference = model.lm.model(input_ids=batch.text_ids, labels=batch.text_ids).loss
    assert out.terms["lm"] == pytest.approx(float(reference), abs=1e-5)


def test_mm_ffw_starts_as_an_exact_copy_of_the_lm_mlp(tiny_lm):
    model, _ = make_model(tiny_lm, ffw_init="copy-lm", mlp_form="swiglu")
    model.eval()
    x = torch.randn(2, 9, model.lm.d_model)
    for layer, block in model.mm_blocks.items():
        lm_mlp = model.lm.mlp(int(layer))
        assert block.ffw is not lm_mlp
        assert torch.equal(block.ffw(x), lm_mlp(x))
        assert type(block.ffw) is type(lm_mlp)


def test_fused_gelu_is_the_gelu_new_formula():
    """FrozenLM swaps GPT-2's gelu_new for the fused tanh GELU, and the LM computes what it computed."""
    import copy

    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.activations import NewGELUActivation

    from models.nn.lm import FrozenLM

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16)).eval()
    plain = copy.deepcopy(hf)
    fused = FrozenLM(hf).model.eval()
    kinds = lambda m: {type(x) for x in m.modules()}  # noqa: E731
    assert NewGELUActivation in kinds(plain) and NewGELUActivation not in kinds(fused)
    assert [type(b.mlp.act) for b in fused.transformer.h] == [torch.nn.GELU, torch.nn.GELU]
    assert all(b.mlp.act.approximate == "tanh" for b in fused.transformer.h)
    assert NewGELUActivation in kinds(FrozenLM(copy.deepcopy(plain), fuse_gelu=False).model)  # the switch holds
    ids = torch.randint(0, 50, (3, 12))
    with torch.no_grad():
        torch.testing.assert_close(fused(ids).logits, plain(ids).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("ffw", ["full", "lora"])
def test_only_the_intended_parameters_train(tiny_lm, ffw):
    model, _ = make_model(tiny_lm, ffw_mode=ffw, lora_r=4, lora_alpha=8)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing trains"
    assert all(
        n.startswith(
            ("av_encoder.", "fusion_tokens", "mm_blocks.", "task_head.", "text_head.", "av_head.", "fusion_head.")
        )
        for n in trainable
    )
    assert not any(p.requires_grad for p in model.lm.parameters())
    assert "fusion_tokens" in trainable and any(n.startswith("av_encoder.") for n in trainable)
    ffw_names = {n for n, _ in model.named_parameters() if ".ffw." in n}
    if ffw == "full":
        assert ffw_names <= trainable
    else:
        assert {n for n in ffw_names if "lora_" in n} == ffw_names & trainable
        assert any("lora_" in n for n in trainable)
    # One backward pass gives gradients to trainable parameters only.
    model.train()
    batch = make_batch(_tokenizer(tiny_lm))
    model(batch).loss.backward()
    assert all(p.grad is None for p in model.lm.parameters())
    assert model.fusion_tokens.grad is not None and model.fusion_tokens.grad.abs().sum() > 0


def _tokenizer(lm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(lm_dir)


def test_checkpoint_round_trip_gives_identical_outputs(tiny_lm, tmp_path):
    model, tok = make_model(tiny_lm, ffw_mode="lora", lora_r=4, lora_alpha=8)
    batch = make_batch(tok)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(batch).loss.backward()
    opt.step()  # move away from the initial weights so the test can fail
    model.eval()
    with torch.no_grad():
        before = model(batch, compute_loss=False)
    save_checkpoint(tmp_path / "ckpt", model, extra={"audio_mean": torch.ones(7)}, meta={"note": "x"})
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["lm"] == str(tiny_lm) and saved["ffw_mode"] == "lora" and saved["kind"] == "deepmlf"
    assert not list(tmp_path.glob(".*tmp"))  # no temporary leftovers
    checkpoint = read_checkpoint(tmp_path / "ckpt")
    extra, meta = checkpoint.extra, checkpoint.meta
    assert checkpoint.kind == "deepmlf" and checkpoint.config == model.config
    loaded, _ = DeepMLF.from_config(checkpoint.config)
    load_weights(loaded, checkpoint)
    loaded.eval()
    with torch.no_grad():
        after = loaded(batch, compute_loss=False)
    assert torch.equal(before.prediction, after.prediction)
    assert torch.equal(before.fusion, after.fusion)
    assert torch.equal(extra["audio_mean"], torch.ones(7)) and meta == {"note": "x"}
    # The frozen LM is referenced, not copied: the checkpoint holds no LM tensor.
    from safetensors.torch import load_file

    assert not any(k.startswith("lm.") for k in load_file(str(tmp_path / "ckpt" / "model.safetensors")))


def test_a_clip_gives_the_same_prediction_alone_or_in_a_batch(tiny_lm):
    model, tok = make_model(tiny_lm)
    model.eval()
    batch = make_batch(tok, labels=False)
    with torch.no_grad():
        together = model(batch, compute_loss=False)
        for i in range(len(batch)):
            alone = model(single(batch, i, tok), compute_loss=False)
            torch.testing.assert_close(alone.prediction[0], together.prediction[i], rtol=0, atol=1e-5)
            torch.testing.assert_close(alone.fusion[0], together.fusion[i], rtol=0, atol=1e-5)


@pytest.mark.parametrize("aug", ["seqaug", "noise", "dropout"])
def test_augmentation_changes_nothing_in_eval_mode(tiny_gpt2, aug):
    torch.manual_seed(0)
    plain, tok = make_model(tiny_gpt2, text_aug="none", av_aug="none")
    torch.manual_seed(0)
    augmented, _ = make_model(tiny_gpt2, text_aug=aug, text_aug_p=1.0, text_aug_apply=1.0, av_aug=aug, av_aug_p=0.9)
    batch = make_batch(tok)
    plain.eval(), augmented.eval()
    with torch.no_grad():
        assert torch.equal(plain(batch).prediction, augmented(batch).prediction)
    # ...while in training mode it does change the inputs (so this test can fail).
    for m in (plain, augmented):
        m.train()
        m.lm.eval()
        for module in m.modules():
            if isinstance(module, torch.nn.Dropout):
                module.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        a = plain(batch).prediction
        torch.manual_seed(1)
        b = augmented(batch).prediction
    assert not torch.allclose(a, b)


def test_seqaug_permutes_only_real_steps():
    from models.nn.augment import permute_valid_positions, seq_aug

    valid = torch.tensor([[False, False, True, True, True], [True, True, True, False, False]])
    for _ in range(20):
        perm = permute_valid_positions(valid)
        for row in range(2):
            real = valid[row].nonzero().flatten().tolist()
            assert sorted(perm[row, real].tolist()) == real
            pads = (~valid[row]).nonzero().flatten().tolist()
            assert perm[row, pads].tolist() == pads
    x = torch.arange(10.0).view(1, 5, 2).repeat(2, 1, 1)
    out = seq_aug(x, valid, p=1.0)
    assert torch.equal(out[0, :2], x[0, :2]) and torch.equal(out[1, 3:], x[1, 3:])


def test_mm_layer_outside_the_lm_is_a_clear_error(tiny_gpt2):
    with pytest.raises(ConfigError, match=r"outside the LM, which has 4 layers.*0\.\.3"):
        DeepMLF.from_config(ModelConfig(lm=str(tiny_gpt2), mm_layers=(1, 4), d_audio=7, d_vision=5))


def test_pooling_is_contiguous_and_length_aware():
    x = torch.arange(12.0).view(1, 12, 1).repeat(3, 1, 1)
    lengths = torch.tensor([12, 3, 0])
    steps = pooled_lengths(lengths, torch.tensor([1, 1, 2]), pool_len=4)
    assert steps.tolist() == [4, 3, 2]
    pooled = pool_to_grid(x, lengths, steps, pool_len=4)[..., 0]
    assert pooled[0].tolist() == [1.0, 4.0, 7.0, 10.0]  # means of [0,1,2], [3,4,5], ...
    assert pooled[1].tolist() == [0.0, 1.0, 2.0, 0.0]  # 3 frames on 3 steps; step 4 is padding
    assert pooled[2].tolist() == [0.0, 0.0, 0.0, 0.0]  # no such track
    # A shorter clip on a longer grid repeats frames instead of reading padding.
    up = pool_to_grid(x[:1], torch.tensor([2]), torch.tensor([4]), pool_len=4)[0, :, 0]
    assert up.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_gates_start_where_the_paper_says(tiny_gpt2):
    for gating, expected in [("sigmoid", 0.5), ("tanh", 0.0)]:
        model, _ = make_model(tiny_gpt2, gating=gating)
        block = model.mm_blocks["1"]
        assert float(block.gate_ca.value().detach()) == expected and float(block.gate_ffw.value().detach()) == expected
    model, _ = make_model(tiny_gpt2, gating="none")
    assert model.mm_blocks["1"].gate_ca.alpha is None


def test_config_round_trips_through_json_and_validates():
    for preset in PRESETS.values():
        config = preset.model_config()
        assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({"n_fuson": 3})
    with pytest.raises(ConfigError, match="gating='soft'"):
        ModelConfig(gating="soft")
    assert parse_layer_list("3,5,7..9") == (3, 5, 7, 8, 9)
    with pytest.raises(ConfigError):
        parse_layer_list("5-11")


def test_fusion_input_and_ffw_ablations_run(tiny_gpt2):
    """Each ablation trains, and the cross-attention's queries are the tokens `fusion_inputs` names.

    The text never sees the fusion tokens, so the text head y_t (on the last real text token)
    depends on audio/vision only when the text tokens themselves query z ("text", "both"), and
    the fusion heads see AV through their own queries or, under "text", through the text.
    """
    for overrides in [
        dict(fusion_inputs="text"),
        dict(fusion_inputs="both"),
        dict(ffw_mode="none"),
        dict(fusion_inputs="text", n_fusion=0),
    ]:
        model, tok = make_model(tiny_gpt2, **overrides)
        model.train()
        out = model(make_batch(tok))
        out.loss.backward()
        assert torch.isfinite(out.loss)
        blocks = list(model.mm_blocks.values())
        assert all((b.ffw is None) == (overrides.get("ffw_mode") == "none") for b in blocks)

    def text_head_moves_with_av(fusion_inputs: str) -> bool:
        torch.manual_seed(0)
        model, tok = make_model(tiny_gpt2, fusion_inputs=fusion_inputs)
        with torch.no_grad():  # open every path: whatever the init, cross-attention reaches its queries
            for p in model.mm_blocks.parameters():
                p.normal_(0, 0.1)
        model.eval()
        batch = make_batch(tok)
        other = Batch(
            batch.text_ids,
            batch.text_valid,
            batch.audio + 1.0,
            batch.audio_lengths,
            batch.vision - 1.0,
            batch.vision_lengths,
        )
        with torch.no_grad():
            a, b = model(batch, compute_loss=False), model(other, compute_loss=False)
        assert not torch.allclose(a.fusion, b.fusion)  # the fusion tokens always read AV
        return not torch.allclose(a.text, b.text, atol=1e-6)

    assert not text_head_moves_with_av("fusion")  # the paper: only fusion tokens query z
    assert text_head_moves_with_av("text") and text_head_moves_with_av("both")


def test_a_missing_lm_is_one_clear_line(tmp_path, monkeypatch):
    from models.errors import ModelNotAvailableError
    from models.nn.lm import resolve_lm_source

    monkeypatch.chdir(tmp_path)  # no runs/demo here
    with pytest.raises(ModelNotAvailableError, match="sample` preset's tiny GPT-2, which `deepmlf demo`"):
        resolve_lm_source(PRESETS["sample"].model["lm"])
    with pytest.raises(
        ModelNotAvailableError,
        match=r"directory a/b/c \(relative to the current directory, .+\) does not exist; check the --lm path",
    ):
        resolve_lm_source("a/b/c")  # two slashes: not a hub id, so no hub lookup
    with pytest.raises(ModelNotAvailableError, match="not a local directory and not in the Hugging Face cache"):
        resolve_lm_source("nobody/no-such-model-here")
