"""Resolving a run happens once (models.training.resolution): the spec, and fresh / resume / refused.

The library decides from parsed options, a dataset and a run directory; the
`train` command parses strings, hands them over and prints the answer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_training import StopAt, small_sample, spec_for  # noqa: F401  (fixture re-used)
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.errors import ConfigError
from models.run import Run
from models.training.experiment import train_run
from models.training.resolution import Fresh, Refused, Resume, RunOptions, resolve_run, resolve_spec


def _sample_options(tiny_gpt2, **train) -> RunOptions:
    """What `train --preset sample --lm LM --mm-layers 1,3 --n-fusion 2 ...` parses into."""
    return RunOptions(
        preset="sample",
        model_overrides={"lm": str(tiny_gpt2), "mm_layers": (1, 3), "n_fusion": 2},
        train_overrides={"lr": 1e-3, "batch_size": 16, "grad_accum": 2, "max_epochs": 3, "patience": 5, **train},
    )


@pytest.fixture(scope="module")
def interrupted(small_sample, tiny_gpt2, tmp_path_factory):  # noqa: F811
    """A run cut in its second epoch (one epoch finished): (dataset, run directory). Resolution only reads it."""
    dataset, _ = small_sample
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        train_run(dataset, spec_for(tiny_gpt2, epochs=3), run_dir, progress=lambda s: StopAt(1))
    return dataset, run_dir


def _files(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


def test_a_new_directory_is_fresh_with_the_kind_normalised_and_the_dataset_feature_sizes(
    small_sample,  # noqa: F811 (the imported fixture)
    tiny_gpt2,
    tmp_path,
):
    dataset, _ = small_sample
    # Feature sizes other than the preset's (33/16): the dataset's own must reach the spec.
    narrow = dataclasses.replace(
        dataset,
        splits={
            name: dataclasses.replace(split, vision=split.vision[..., :10]) for name, split in dataset.splits.items()
        },
    )
    options = dataclasses.replace(_sample_options(tiny_gpt2), kind="DeepMLF")
    assert options.kind == "deepmlf"
    resolved = resolve_run(options, narrow, tmp_path / "new")
    assert isinstance(resolved.verdict, Fresh) and not resolved.resumes
    assert resolved.spec.kind == "deepmlf"
    assert (resolved.spec.model.d_audio, resolved.spec.model.d_vision) == (33, 10)
    assert Path(resolved.spec.model.lm).is_absolute()
    assert not (tmp_path / "new").exists()  # resolving writes nothing
    with pytest.raises(ConfigError, match="unknown model 'transformer'; choose one of: .*deepmlf"):
        RunOptions(kind="transformer")


def test_an_interrupted_run_resumes_with_its_own_settings(interrupted):
    dataset, run_dir = interrupted
    before = _files(run_dir)
    # No preset, no config file: the run's saved settings are the base, not the dataset's preset.
    resolved = resolve_run(RunOptions(), dataset, run_dir, resume=True)
    assert isinstance(resolved.verdict, Resume) and resolved.resumes
    assert resolved.spec == Run(run_dir).spec()
    # Where and how fast it runs may change on resume; what it computes may not.
    faster = resolve_run(
        RunOptions(train_overrides={"eval_batch_size": 7, "checkpoint_layers": True}), dataset, run_dir, resume=True
    )
    assert isinstance(faster.verdict, Resume)
    assert _files(run_dir) == before


def test_a_resume_with_changed_settings_is_refused_naming_every_one(interrupted, tiny_gpt2):
    dataset, run_dir = interrupted
    before = _files(run_dir)
    options = RunOptions(model_overrides={"n_fusion": 3}, train_overrides={"lr": 0.01, "max_epochs": 4}, seeds=(1, 2))
    resolved = resolve_run(options, dataset, run_dir, resume=True)
    assert isinstance(resolved.verdict, Refused)
    changes = resolved.verdict.changes
    assert set(changes) == {
        "lr: 0.001 in the run, 0.01 now",
        "max_epochs: 3 in the run, 4 now",
        "n_fusion: 2 in the run, 3 now",
        "seeds: [0] in the run, [1, 2] now",
    }
    assert all(change in resolved.verdict.reason for change in changes)
    assert "resume with the run's own settings" in resolved.verdict.reason
    # With a preset the spec is built from it, not from the run (the run took TrainConfig's defaults,
    # the preset has its own clipping etc.): each of those differences is named too.
    from_preset = resolve_run(_sample_options(tiny_gpt2, lr=0.01), dataset, run_dir, resume=True)
    assert isinstance(from_preset.verdict, Refused)
    assert "lr: 0.001 in the run, 0.01 now" in from_preset.verdict.changes
    assert any(c.startswith("clip_mode:") for c in from_preset.verdict.changes)
    assert all(change in from_preset.verdict.reason for change in from_preset.verdict.changes)
    assert _files(run_dir) == before  # nothing written on refusal


def test_a_started_run_without_resume_another_dataset_or_process_count_and_a_foreign_folder_are_refused(
    interrupted,
    small_sample,  # noqa: F811 (the imported fixture)
    tiny_gpt2,
    tmp_path,
    monkeypatch,
):
    import models.training.resolution

    dataset, run_dir = interrupted
    spec = Run(run_dir).spec()
    again = resolve_spec(spec, dataset, run_dir)
    assert isinstance(again.verdict, Refused) and "already holds a run; add --resume" in again.verdict.reason
    # the same data at another path is the run's own (a copied run, issue 19 item 21); other content is not
    same = dataclasses.replace(dataset, source=str(tmp_path / "elsewhere"))  # its fingerprint: of the raw data
    assert isinstance(resolve_spec(spec, same, run_dir, resume=True).verdict, Resume)
    train = dataset.splits["train"]
    other = dataclasses.replace(
        same, splits={**dataset.splits, "train": train.subset(range(len(train) - 1))}, _fingerprint=None
    )
    moved = resolve_spec(spec, other, run_dir, resume=True)
    assert isinstance(moved.verdict, Refused) and moved.verdict.changes == ("dataset",)
    assert "other content" in moved.verdict.reason
    two = resolve_spec(spec, dataset, run_dir, resume=True, world=2)
    assert isinstance(two.verdict, Refused) and two.verdict.changes == ("processes",)
    assert "resume without torchrun" in two.verdict.reason
    # Rank 1 does not judge: it takes the run's saved spec (rank 0's verdict stops a refused job).
    monkeypatch.setattr(models.training.resolution, "rank_and_world", lambda: (1, 2))
    assert isinstance(resolve_spec(spec, dataset, run_dir, resume=True).verdict, Resume)
    monkeypatch.undo()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_bytes(b"")
    refused = resolve_spec(spec_for(tiny_gpt2), dataset, foreign)
    assert isinstance(refused.verdict, Refused) and "is not a deepmlf run" in refused.verdict.reason
    with pytest.raises(ConfigError, match="already holds a run"):  # a library caller gets the same rules
        train_run(dataset, spec, run_dir)


def test_the_train_command_hands_its_options_to_resolve_run_and_prints_the_refusal(
    small_sample,  # noqa: F811 (the imported fixture)
    tiny_gpt2,
    tmp_path,
    monkeypatch,
):
    import models.training.experiment
    import models.training.resolution

    _, path = small_sample
    seen = []

    def spy(options, dataset, run_dir, resume=False, world=None):
        seen.append((options, run_dir, resume))
        return models.training.resolution.ResolvedRun(
            spec_for(tiny_gpt2), Path(run_dir), Refused("spy: the library refused", ("lr",))
        )

    monkeypatch.setattr(models.training.resolution, "resolve_run", spy)
    monkeypatch.setattr(models.training.experiment, "train_run", lambda *a, **k: pytest.fail("trained"))
    out = CliRunner().invoke(
        app,
        [
            "train",
            "-d",
            str(path),
            "--model",
            "Early",
            "--lr",
            "0.01",
            "--mm-layers",
            "1,3",
            "--lm-dropout",
            "off",
            "--out",
            str(tmp_path / "r"),
            "--device",
            "cpu",
            "-q",
        ],
    )
    assert out.exit_code == 1 and "spy: the library refused" in out.output, out.output
    ((options, run_dir, resume),) = seen
    assert options.kind == "early" and options.train_overrides["lr"] == 0.01
    assert options.model_overrides["mm_layers"] == (1, 3) and options.model_overrides["lm_dropout"] is False
    assert run_dir == tmp_path / "r" and resume is False


def test_no_cli_module_decides_what_the_resolution_decides():
    """The names of the decisions (kind, feature sizes, resume rules) appear in no CLI file."""
    root = Path(__file__).resolve().parents[1] / "deepmlf_cli"
    decisions = (
        "model_kind(",
        "d_audio=",
        "d_vision=",
        "is_started(",
        "spec_differences",
        "RESUMABLE_CHANGES",
        "resume_verdict",
        'os.environ.get("RANK"',
    )
    offenders = [
        f"{p.relative_to(root)}: {word}" for p in root.rglob("*.py") for word in decisions if word in p.read_text()
    ]
    assert offenders == []
