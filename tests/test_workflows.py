"""Real users' workflows (issue 11): empty splits, bad choices, failed and resumed runs, moved runs,
split names, schemes, cleaning counts, presets picked from the transcripts' language."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.data.format import save_dataset
from models.data.load import load_dataset
from models.data.sample import make_sample_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A small sample dataset, and copies of it with an empty test / valid split."""
    root = tmp_path_factory.mktemp("workflows")
    data = make_sample_dataset(n_train=24, n_valid=8, n_test=8, seed=1)
    paths = {"small": save_dataset(data, root / "small")}
    for empty in ("test", "valid"):
        data.splits = {**data.splits, empty: data.splits[empty].subset(np.arange(0))}
        paths[f"no-{empty}"] = save_dataset(data, root / f"no-{empty}")
        data = make_sample_dataset(n_train=24, n_valid=8, n_test=8, seed=1)
    return paths


def train(args, cwd: Path | None = None):
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(
            app,
            [
                "train",
                "--preset",
                "sample",
                "--mm-layers",
                "1..3",
                "--n-fusion",
                "2",
                "--batch-size",
                "8",
                "--device",
                "cpu",
                "-q",
                *args,
            ],
        )
    finally:
        os.chdir(old)


def one_line_error(out, *needles):
    assert out.exit_code == 1, out.output
    assert "Traceback" not in out.output and "Error" not in out.output.split("error:")[0], out.output
    for needle in needles:
        assert needle in out.output, out.output


# --------------------------------------------------------------------------- item 3: empty splits
def test_train_without_a_test_split_trains_and_says_there_are_no_test_metrics(datasets, tiny_gpt2, tmp_path):
    out = train(
        [
            "-d",
            str(datasets["no-test"]),
            "--lm",
            str(tiny_gpt2),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "r"),
            "--json",
        ]
    )
    assert out.exit_code == 0, out.output
    results = json.loads(out.stdout)
    assert results["seeds"] == {"0": {}} and results["mean"] == {}
    assert any("test split is empty" in n for n in results["notes"])
    assert (tmp_path / "r" / "seed_0" / "best" / "model.safetensors").is_file()
    assert not (tmp_path / "r" / "seed_0" / "predictions_test.csv").exists()
    out = train(
        ["-d", str(datasets["no-test"]), "--lm", str(tiny_gpt2), "--epochs", "1", "--out", str(tmp_path / "r2")]
    )
    assert out.exit_code == 0 and "no test metrics" in out.output, out.output
    # evaluate on the empty split says so; the valid split still works
    one_line_error(runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--device", "cpu"]), "test split", "empty")
    out = runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--split", "valid", "--json", "--device", "cpu"])
    assert out.exit_code == 0, out.output


def test_train_with_an_empty_valid_split_is_refused_in_one_line(datasets, tiny_gpt2, tmp_path):
    out = train(["-d", str(datasets["no-valid"]), "--lm", str(tiny_gpt2), "--out", str(tmp_path / "r")])
    one_line_error(out, "valid split is empty", "early stopping")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- item 4: model choices
def test_unknown_model_lists_the_choices_and_case_does_not_matter(datasets, tiny_gpt2, tmp_path):
    out = train(["-d", str(datasets["small"]), "--lm", str(tiny_gpt2), "--model", "foo", "--out", str(tmp_path / "r")])
    one_line_error(out, "unknown model 'foo'", "deepmlf", "early", "attention", "vision")
    assert not (tmp_path / "r").exists()
    out = train(
        [
            "-d",
            str(datasets["small"]),
            "--lm",
            str(tiny_gpt2),
            "--model",
            "Early",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "e"),
            "--json",
        ]
    )
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "e" / "run.json").read_text())["spec"]["kind"] == "early"


def test_train_help_lists_every_model_kind():
    from deepmlf_cli.commands.train import TRAIN_MODELS
    from models.nn.registry import MODEL_KINDS

    assert set(TRAIN_MODELS) == set(MODEL_KINDS) - {"av"}
    out = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    text = " ".join(out.output.replace("│", " ").split())
    assert "deepmlf, early, late, attention, text, audio, vision" in text


# --------------------------------------------------------------------------- item 5: failed and resumed runs
def test_a_failed_start_leaves_no_trap_and_a_plain_rerun_uses_the_fixed_options(datasets, tiny_gpt2, tmp_path):
    run = tmp_path / "r"
    out = train(["-d", str(datasets["small"]), "--lm", str(tmp_path / "no-such-lm"), "--out", str(run)])
    one_line_error(out, "no-such-lm")
    assert not (run / "run.json").exists()
    out = train(["-d", str(datasets["small"]), "--lm", str(tiny_gpt2), "--epochs", "1", "--out", str(run)])
    assert out.exit_code == 0, out.output
    assert json.loads((run / "run.json").read_text())["spec"]["model"]["lm"] == str(Path(tiny_gpt2).resolve())


def test_a_run_json_without_a_finished_epoch_is_replaced_by_a_plain_rerun(datasets, tiny_gpt2, tmp_path):
    from models.run import RunSpec
    from models.training.experiment import train_run
    from tests.test_training import StopAt, spec_for

    data = load_dataset(datasets["small"])
    with pytest.raises(KeyboardInterrupt):  # killed during the first epoch: nothing trained yet
        train_run(data, spec_for(tiny_gpt2, epochs=1), tmp_path / "r", progress=lambda s: StopAt(0))
    assert (tmp_path / "r" / "run.json").is_file()
    train_run(data, spec_for(tiny_gpt2, epochs=2), tmp_path / "r")
    saved = RunSpec.from_dict(json.loads((tmp_path / "r" / "run.json").read_text())["spec"])
    assert saved.train.max_epochs == 2


def test_resume_refuses_changed_options_and_a_folder_without_a_run(datasets, tiny_gpt2, tmp_path):
    run = tmp_path / "r"
    base = ["-d", str(datasets["small"]), "--lm", str(tiny_gpt2), "--out", str(run)]
    one_line_error(train([*base, "--resume"]), "holds no run to resume")
    assert not run.exists()
    assert train([*base, "--epochs", "2", "--lr", "0.001"]).exit_code == 0
    # the same settings (or none at all) resume: the finished run is reported, not retrained
    out = train([*base, "--resume", "--epochs", "2", "--device", "cpu", "--json"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["train", "-d", str(datasets["small"]), "--out", str(run), "--resume", "-q", "--json"])
    assert out.exit_code == 0, out.output
    one_line_error(
        train([*base, "--resume", "--epochs", "2", "--lr", "0.01", "--n-fusion", "3"]),
        "lr: 0.001 in the run, 0.01 now",
        "n_fusion: 2 in the run, 3 now",
    )
    one_line_error(
        train([*base, "--resume", "--epochs", "10"]), "is finished", "new run", "max_epochs: 2 in the run, 10 now"
    )


def test_an_interrupted_run_refuses_a_changed_option_on_resume(datasets, tiny_gpt2, tmp_path):
    from models.errors import ConfigError
    from models.training.experiment import train_run
    from tests.test_training import StopAt, spec_for

    data = load_dataset(datasets["small"])
    with pytest.raises(KeyboardInterrupt):
        train_run(data, spec_for(tiny_gpt2, epochs=3), tmp_path / "r", progress=lambda s: StopAt(1))
    with pytest.raises(ConfigError, match="max_epochs: 3 in the run, 4 now"):
        train_run(data, spec_for(tiny_gpt2, epochs=4), tmp_path / "r", resume=True)
    # the device may change: it is not part of the run's settings
    train_run(data, spec_for(tiny_gpt2, epochs=3), tmp_path / "r", resume=True, device="cpu")


# --------------------------------------------------------------------------- item 6: runs that move
def test_a_moved_run_evaluates_from_another_folder(datasets, tiny_gpt2, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_gpt2, work / "lm")
    shutil.copytree(datasets["small"], work / "data")
    out = train(["-d", "data", "--lm", "lm", "--epochs", "1", "--out", "runs/r", "--json"], cwd=work)
    assert out.exit_code == 0, out.output
    saved = json.loads((work / "runs" / "r" / "run.json").read_text())
    assert saved["dataset"]["source"] == str((work / "data").resolve())
    assert saved["spec"]["model"]["lm"] == str((work / "lm").resolve())
    moved = tmp_path / "elsewhere" / "r"
    shutil.move(str(work / "runs" / "r"), moved)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    old = Path.cwd()
    os.chdir(elsewhere)
    try:
        out = runner.invoke(app, ["evaluate", str(moved), "--json", "--device", "cpu"])
        assert out.exit_code == 0, out.output
        expected = json.loads((moved / "seed_0" / "metrics.json").read_text())["test"]
        assert json.loads(out.stdout)["seeds"]["0"]["MAE"] == pytest.approx(expected["MAE"], abs=1e-6)
        # the LM and the dataset move too: --lm and --dataset point at their new places
        shutil.move(str(work / "lm"), tmp_path / "lm2")
        shutil.move(str(work / "data"), tmp_path / "data2")
        out = runner.invoke(app, ["evaluate", str(moved), "--device", "cpu"])
        one_line_error(out, "--dataset")
        out = runner.invoke(app, ["evaluate", str(moved), "--dataset", str(tmp_path / "data2"), "--device", "cpu"])
        one_line_error(out, "--lm")
        out = runner.invoke(
            app,
            [
                "evaluate",
                str(moved),
                "--dataset",
                str(tmp_path / "data2"),
                "--lm",
                str(tmp_path / "lm2"),
                "--json",
                "--device",
                "cpu",
            ],
        )
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["seeds"]["0"]["MAE"] == pytest.approx(expected["MAE"], abs=1e-6)
    finally:
        os.chdir(old)


# --------------------------------------------------------------------------- items 16, 17, 18
def _write_pickle(path: Path, data, scheme: str | None) -> Path:
    blob = {}
    for name, split in data.splits.items():
        blob[name] = {
            "raw_text": split.texts,
            "audio": split.audio,
            "vision": split.vision,
            "id": split.ids,
            "regression_labels": split.labels,
            "audio_lengths": split.audio_lengths,
            "vision_lengths": split.vision_lengths,
        }
    if scheme is not None:
        blob["scheme"] = scheme
    path.write_bytes(pickle.dumps(blob))
    return path


def test_a_pickle_records_its_scheme_and_train_takes_scheme(tmp_path):
    from models.data.types import with_scheme
    from models.errors import DatasetError

    data = make_sample_dataset(n_train=12, n_valid=4, n_test=4, seed=2)  # labels in [-1, 1]
    guessed = load_dataset(_write_pickle(tmp_path / "plain.pkl", data, None))
    assert guessed.scheme == "sims" and guessed.scheme_guessed
    recorded = load_dataset(_write_pickle(tmp_path / "mosi.pkl", data, "mosi"))
    assert recorded.scheme == "mosi" and not recorded.scheme_guessed
    assert with_scheme(guessed, "mosi").scheme == "mosi"
    with pytest.raises(DatasetError, match="records scheme 'mosi'"):
        with_scheme(recorded, "sims")
    _write_pickle(tmp_path / "bad.pkl", data, "mosei")
    with pytest.raises(DatasetError, match="'scheme' is 'mosei'"):
        load_dataset(tmp_path / "bad.pkl")
    out = runner.invoke(app, ["train", "-d", str(tmp_path / "mosi.pkl"), "--scheme", "sims", "--preset", "sample"])
    one_line_error(out, "records scheme 'mosi'")


def test_train_scheme_overrides_a_guessed_scheme_and_evaluate_scores_as_the_run_did(tiny_gpt2, tmp_path):
    data = make_sample_dataset(n_train=24, n_valid=8, n_test=8, seed=2)  # labels in [-1, 1]: guessed sims
    pkl = _write_pickle(tmp_path / "plain.pkl", data, None)
    out = train(
        [
            "-d",
            str(pkl),
            "--scheme",
            "mosi",
            "--lm",
            str(tiny_gpt2),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "r"),
            "--json",
        ]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["scheme"] == "mosi" and "Has0_acc_2" in json.loads(out.stdout)["mean"]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["dataset"]["scheme"] == "mosi"
    out = runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--json", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["scheme"] == "mosi"
    out = runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--scheme", "sims", "--json", "--device", "cpu"])
    assert json.loads(out.stdout)["scheme"] == "sims"


def test_evaluate_accepts_every_split_name_extract_accepts(datasets, tiny_gpt2, tmp_path):
    from models.data.types import SPLIT_ALIASES, canonical_split

    assert {canonical_split(a) for a in ("validation", "VAL", "dev", "valid")} == {"valid"}
    out = train(["-d", str(datasets["small"]), "--lm", str(tiny_gpt2), "--epochs", "1", "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    results = {}
    for name in ("validation", "dev", "valid"):
        out = runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--split", name, "--json", "--device", "cpu"])
        assert out.exit_code == 0, out.output
        results[name] = json.loads(out.stdout)
        assert results[name]["split"] == "valid"
    assert results["validation"]["seeds"] == results["valid"]["seeds"]
    one_line_error(
        runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--split", "holdout"]),
        "unknown split 'holdout'",
        "validation",
    )
    assert set(SPLIT_ALIASES.values()) == {"train", "valid", "test"}


def test_cleaning_counts_are_recorded_in_the_run_and_the_json(tiny_gpt2, tmp_path):
    dirty = make_sample_dataset(n_train=24, n_valid=8, n_test=8, seed=1)
    dirty.splits["train"].audio[0, 0, :3] = np.nan
    dirty.splits["test"].vision[1, 0, 0] = -np.inf
    path = save_dataset(dirty, tmp_path / "dirty")  # the files keep the NaN/-inf
    data = load_dataset(path)
    assert data.cleaning_report["train"]["audio"] == 3 and data.cleaning_report["test"]["vision"] == 1
    out = train(["-d", str(path), "--lm", str(tiny_gpt2), "--epochs", "1", "--out", str(tmp_path / "r"), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["cleaned"] == data.cleaning_report
    assert json.loads((tmp_path / "r" / "run.json").read_text())["dataset"]["cleaned"] == data.cleaning_report
    assert json.loads((tmp_path / "r" / "results.json").read_text())["cleaned"] == data.cleaning_report
    out = runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--json", "--device", "cpu"])
    assert json.loads(out.stdout)["cleaned"] == {"test": data.cleaning_report["test"]}


# --------------------------------------------------------------------------- item 20: evaluate prints once
def test_evaluate_prints_a_single_seed_once(datasets, tiny_gpt2, tmp_path):
    out = train(["-d", str(datasets["small"]), "--lm", str(tiny_gpt2), "--epochs", "1", "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--device", "cpu"], terminal_width=120)
    assert out.exit_code == 0, out.output
    assert out.output.count("Mult_acc_2") == 1 and "MAE" in out.output and "Has0_acc_2" not in out.output


# --------------------------------------------------------------------------- item 22: preset by language
def _custom(tmp_path, texts, name="mycorpus"):
    data = make_sample_dataset(n_train=12, n_valid=4, n_test=4, seed=2)
    data.name = name
    for split in data.splits.values():
        split.texts = [texts[i % len(texts)] for i in range(len(split))]
    return save_dataset(data, tmp_path / name)


def test_a_custom_sims_scale_dataset_gets_its_preset_from_the_transcripts_language(tmp_path):
    from models.errors import ConfigError
    from models.training.resolution import resolve_preset_name

    english = load_dataset(_custom(tmp_path, ["i really loved the food", "this was awful"]))
    chinese = load_dataset(_custom(tmp_path, ["这个电影非常好看", "我不喜欢这个"], name="zh"))
    assert english.scheme == chinese.scheme == "sims"
    assert resolve_preset_name(None, {}, chinese) == "sims"
    with pytest.raises(ConfigError, match="--preset"):
        resolve_preset_name(None, {}, english)
    assert resolve_preset_name("mosei", {}, english) == "mosei"
    out = runner.invoke(app, ["train", "-d", str(tmp_path / "mycorpus")])
    one_line_error(out, "--preset", "mosei", "sims")


# --------------------------------------------------------------------------- item 7: hub ids with dots
@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-1.7B", "Qwen/Qwen2.5-0.5B"])
def test_hub_ids_with_a_dot_are_hub_ids_not_paths(name, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from models.errors import ModelNotAvailableError
    from models.nn.lm import resolve_lm_source

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_lm_source(name)
    assert "does not exist" not in str(info.value) and f"`hf download {name}`" in str(info.value)
    # cached: the id itself is returned for from_pretrained
    snapshot = tmp_path / "cache" / f"models--{name.replace('/', '--')}" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    assert resolve_lm_source(name) == name
    # an existing directory of that name is a path
    (tmp_path / name).mkdir(parents=True)
    (tmp_path / name / "config.json").write_text("{}")
    assert resolve_lm_source(name) == str((tmp_path / name).resolve())


def test_one_download_command_is_named_everywhere():
    root = Path(__file__).parent.parent
    for folder in ("models", "deepmlf_cli", "docs"):
        for path in (root / folder).rglob("*"):
            if path.suffix in (".py", ".md"):
                assert "huggingface-cli" not in path.read_text(), path
    assert "huggingface-cli" not in (root / "README.md").read_text()


# --------------------------------------------------------------------------- item 19: version, completion
def test_version_and_shell_completion():
    from importlib.metadata import version

    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.stdout.strip() == f"deepmlf {version('deepmlf')}"
    out = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in out.output and "--show-completion" in out.output


# --------------------------------------------------------------------------- item 21: README and make demo agree
def test_readme_demo_claim_matches_make_demo():
    import re

    root = Path(__file__).parent.parent
    demo_line = next(line for line in (root / "Makefile").read_text().splitlines() if "deepmlf demo" in line)
    make_seeds = max(1, demo_line.count("--seed"))
    readme = " ".join((root / "README.md").read_text().split())
    claim = re.search(r"mean over (\d+) seeds, `(deepmlf demo[^`]*)`: Acc-2 ≈ 0\.\d+", readme)
    assert claim, "the README names the command behind its demo figures"
    assert int(claim.group(1)) == claim.group(2).count("--seed")
    if int(claim.group(1)) != make_seeds:  # then the README says what `make demo` runs
        assert "`make demo` runs seed 0 alone" in readme and make_seeds == 1


# --------------------------------------------------------------------------- item 20: progress in a log file
def test_progress_without_a_terminal_prints_whole_plain_lines():
    import io

    from rich.console import Console

    from deepmlf_cli.render import EpochProgress, PlainProgress, make_progress

    log = io.StringIO()
    on = Console(file=log, width=40)  # not a terminal, and narrow: nothing may be cut
    with make_progress(False, on) as progress:
        assert isinstance(progress, PlainProgress)
        progress.interval = 0.0  # a periodic line at every batch
        bar = EpochProgress("seed 0", progress, "Mult_acc_2")
        bar.on_epoch_start(41, 2)
        bar.on_batch(0.5)
        bar.on_batch(0.25)
        bar.on_epoch_end(41, {"valid": {"Mult_acc_2": 0.8125}, "train_loss": 0.375, "valid_l1": 0.4321, "best": True})
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("seed 0 epoch 41  1/2  0:00  loss 0.5000")
    assert lines[-1].startswith("seed 0 epoch 41  2/2  0:00  loss 0.3750 · valid L1 0.4321 · Mult_acc_2 0.8125")
    assert "…" not in log.getvalue() and "\x1b" not in log.getvalue()
    assert lines[-1].endswith("★") and "[green]" not in log.getvalue()


def test_extract_prints_no_empty_bar_before_a_fatal_error(tmp_path):
    (tmp_path / "corpus" / "Raw" / "v").mkdir(parents=True)
    (tmp_path / "corpus" / "Raw" / "v" / "00.mp4").write_bytes(b"")
    (tmp_path / "corpus" / "label.csv").write_text("video_id,clip_id,text,label,mode\nv,00,hi,0.5,holdout\n")
    out = runner.invoke(app, ["extract", str(tmp_path / "corpus"), "--out", str(tmp_path / "ds")])
    assert out.exit_code == 1 and "holdout" in out.output, out.output
    assert "0/?" not in out.output and "clips/s" not in out.output, out.output


@pytest.mark.parametrize("resume", [False, True])
def test_ctrl_c_in_train_says_how_to_continue(monkeypatch, resume):
    """train refuses an existing run without --resume, so its Ctrl-C line must name --resume."""
    import deepmlf_cli.workflows.train as workflow

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "train_spec", interrupted)
    result = runner.invoke(app, ["train", "--dataset", "sims", *(["--resume"] if resume else [])])
    assert result.exit_code not in (0, 1)  # the interrupted exit status, not a failure or success
    assert "interrupted" in result.output
    if resume:
        assert "re-run the same command to resume" in result.output
    else:
        assert "re-run the same command with --resume to continue" in result.output
