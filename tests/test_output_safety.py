"""Output folders and files (issue 19 items 9, 10, 11): one writer per folder, read-only and full outputs in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.errors import OutputError
from models.io import LOCK_NAME, output_lock

ROOT = Path(__file__).resolve().parent.parent

_HOLDER = textwrap.dedent("""
    import sys, time
    from models.io import output_lock
    with output_lock(sys.argv[1], "training run"):
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def holder(tmp_path):
    """Start a second real process that holds the lock on a folder; yield (folder, process)."""
    folder = tmp_path / "busy"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield folder, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _one_error_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error:"), output
    return lines[0]


# --------------------------------------------------------------------------- #
# Item 9: one writer per folder
# --------------------------------------------------------------------------- #


def test_second_writer_is_refused_with_the_holders_pid(holder):
    folder, proc = holder
    with pytest.raises(OutputError, match=rf"in use by another deepmlf training run \(pid {proc.pid}\)"):
        with output_lock(folder, "training run"):
            pass


def test_lock_of_a_killed_writer_is_taken_over(holder):
    folder, proc = holder
    proc.send_signal(signal.SIGKILL)  # no cleanup: the lock file and its pid stay behind
    proc.wait()
    assert (folder / LOCK_NAME).read_text().strip() == str(proc.pid)
    with output_lock(folder, "training run") as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert not (folder / LOCK_NAME).exists()  # a finished writer leaves no lock file


def test_locks_are_released_and_reusable(tmp_path):
    with output_lock(tmp_path / "out"):
        (tmp_path / "out" / "results.json").write_text("{}")
    with output_lock(tmp_path / "out"):  # the same process again, after the first let go
        pass
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.json"]
    with output_lock(tmp_path / "failed"):
        pass  # a writer that wrote nothing (its checks failed) leaves no empty folder it made
    assert not (tmp_path / "failed").exists()


def test_extract_into_a_folder_in_use_says_so_in_one_line(holder, tmp_path):
    import media as tm

    folder, proc = holder
    corpus = tm.make_mmsa_corpus(tmp_path / "corpus", (1, 1, 1))
    res = CliRunner().invoke(
        app, ["extract", str(corpus), "--out", str(folder), "--face", "none", "--transcript", "given", "-q"]
    )
    assert res.exit_code == 1
    line = _one_error_line(res.output)
    assert f"pid {proc.pid}" in line and str(folder) in line.replace("\n", "")
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # nothing of the second writer's


def test_train_and_study_into_a_folder_in_use_say_so_in_one_line(holder, tmp_path, tiny_gpt2):
    from models.data.format import save_dataset
    from models.data.sample import make_sample_dataset

    folder, proc = holder
    data = save_dataset(make_sample_dataset(n_train=8, n_valid=4, n_test=4), tmp_path / "data")
    common = [
        "--dataset",
        str(data),
        "--preset",
        "sample",
        "--lm",
        str(tiny_gpt2),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(folder),
        "--quiet",
    ]
    for args in (["train", *common], ["pretrain", *common[:4], *common[6:]], ["study", "gating", *common]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 1, (args, res.output)
        assert f"pid {proc.pid}" in _one_error_line(res.output), args
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]


# --------------------------------------------------------------------------- #
# Item 11: read-only and unwritable outputs, before any work
# --------------------------------------------------------------------------- #


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only tmpfs mount: unlike chmod, it stops root too (the tests may run as root)."""
    target = tmp_path / "ro"
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_writability_probe_fails_for_root_on_a_read_only_mount(read_only_dir):
    from models.io import check_writable_dir, check_writable_file

    with pytest.raises(OutputError, match="read-only"):
        check_writable_dir(read_only_dir)
    with pytest.raises(OutputError, match="read-only"):
        check_writable_dir(read_only_dir / "new" / "run")
    with pytest.raises(OutputError, match=r"--csv .*read-only"):
        check_writable_file(read_only_dir / "out.csv", "--csv")


@pytest.fixture
def ran_whisper(monkeypatch):
    """Records whether predict got as far as its work (Whisper and the model)."""
    import deepmlf_cli.workflows.predict as predict_workflow

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("predict ran before checking --csv")

    monkeypatch.setattr(predict_workflow, "predict_paths", refuse, raising=False)
    return calls


def test_predict_csv_in_a_read_only_folder_fails_before_any_work(read_only_dir, tmp_path, ran_whisper):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    res = CliRunner().invoke(
        app, ["predict", str(clip), "--model", str(tmp_path / "run"), "--csv", str(read_only_dir / "out.csv")]
    )
    assert res.exit_code == 1
    assert "read-only" in _one_error_line(res.output) and ran_whisper == []


def test_compare_csv_in_a_read_only_folder_is_one_line(read_only_dir, tmp_path):
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "no-run"), "--csv", str(read_only_dir / "c.csv")])
    assert res.exit_code == 1
    assert "--csv" in _one_error_line(res.output) and "read-only" in res.output


@pytest.mark.parametrize("command", ["train", "extract", "transcribe", "study"])
def test_out_on_a_read_only_mount_or_a_file_is_one_line(command, read_only_dir, tmp_path):
    import media as tm

    corpus = tm.make_mmsa_corpus(tmp_path / "corpus", (1, 1, 1))
    a_file = tmp_path / f"{uuid.uuid4().hex}.txt"
    a_file.write_text("not a folder")
    for out, expected in ((read_only_dir / "out", "read-only"), (a_file, "is a file")):
        args = {
            "train": ["train", "-d", str(tmp_path / "nodata"), "--out", str(out)],
            "study": ["study", "gating", "-d", str(tmp_path / "nodata"), "--out", str(out)],
            "extract": ["extract", str(corpus), "--out", str(out), "--face", "none", "--transcript", "given", "-q"],
            "transcribe": ["transcribe", str(corpus), "--out", str(out), "-q"],
        }[command]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 1, res.output
        assert expected in _one_error_line(res.output), (command, out, res.output)


# --------------------------------------------------------------------------- #
# Item 10: a full disk during a checkpoint write
# --------------------------------------------------------------------------- #


def _no_space(kind: str) -> Exception:
    import errno

    from safetensors import SafetensorError

    if kind == "oserror":
        return OSError(errno.ENOSPC, "No space left on device")
    # What safetensors really raises on a full disk: not an OSError, only its text says so.
    return SafetensorError(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
    )


@pytest.mark.parametrize("kind", ["oserror", "safetensors"])
def test_disk_full_during_a_checkpoint_is_one_line_and_keeps_the_last_state(kind, tmp_path, tiny_gpt2, monkeypatch):
    import safetensors.torch

    from models.data.format import save_dataset
    from models.data.sample import make_sample_dataset

    data = save_dataset(make_sample_dataset(n_train=8, n_valid=4, n_test=4), tmp_path / "data")
    real, calls = safetensors.torch.save_file, {"n": 0}

    def fills_up(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 1 wrote its best checkpoint and its state; then the disk is full
            raise _no_space(kind)
        return real(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", fills_up)
    run = tmp_path / "run"
    res = CliRunner().invoke(
        app,
        [
            "train",
            "--dataset",
            str(data),
            "--preset",
            "sample",
            "--lm",
            str(tiny_gpt2),
            "--epochs",
            "3",
            "--patience",
            "5",
            "--seed",
            "0",
            "--device",
            "cpu",
            "--out",
            str(run),
            "--quiet",
        ],
    )
    assert res.exit_code == 1
    line = _one_error_line(res.output)
    assert "no space left" in line and str(run / "seed_0") in line and "--resume" in line, line
    state = run / "seed_0" / "state"
    assert (state / "state.safetensors").is_file() and (state / "state.json").is_file()  # epoch 1 survives
    leftovers = [p.name for p in (run / "seed_0").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no half-written temporary directory


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 64 KiB file system: writes past it fail with ENOSPC."""
    target = tmp_path / "small"
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_a_really_full_disk_keeps_the_old_checkpoint(tiny_tmpfs):
    import torch
    from safetensors.torch import save_file

    from models.errors import DiskFullError
    from models.io import atomic_dir

    target = tiny_tmpfs / "state"
    with atomic_dir(target) as tmp:
        save_file({"w": torch.zeros(16)}, str(tmp / "state.safetensors"))
    with pytest.raises(DiskFullError, match=f"no space left on the device while writing {target}"):
        with atomic_dir(target) as tmp:
            save_file({"w": torch.zeros(1 << 16)}, str(tmp / "state.safetensors"))  # 256 KiB > 64 KiB
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["state"]
    from safetensors.torch import load_file

    assert load_file(str(target / "state.safetensors"))["w"].shape == (16,)


# --------------------------------------------------------------------------- #
# Issue 18 §4: only errors raised on purpose print as one line
# --------------------------------------------------------------------------- #


def _run_body(exc: BaseException, capsys) -> str:
    import typer

    from deepmlf_cli.errors import handle_errors

    with pytest.raises(typer.Exit) as exited:
        with handle_errors():
            raise exc
    assert exited.value.exit_code == 1
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "bug",
    [
        FileNotFoundError(2, "No such file or directory", "/tmp/written-by-us.json"),
        PermissionError(13, "Permission denied", "/tmp/x"),
        NotADirectoryError("/tmp/y"),
    ],
)
def test_a_bugs_bare_os_error_keeps_its_traceback(bug, capsys):
    err = _run_body(bug, capsys)
    assert "Traceback" in err and "unexpected failure" in err


def test_errors_raised_on_purpose_are_one_line(tmp_path, capsys):
    from extractors.errors import InputNotFoundError
    from models.errors import CheckpointError

    for exc in (
        InputNotFoundError(f"input not found: {tmp_path}; check the path"),
        CheckpointError(f"model run not found: {tmp_path}"),
    ):
        err = _run_body(exc, capsys)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # and from the commands: a missing input, label file or model run
    for args in (
        ["extract", str(tmp_path / "gone"), "--out", str(tmp_path / "o")],
        ["predict", str(tmp_path / "clip.mp4"), "--model", str(tmp_path / "no-run")],
        ["transcribe", str(tmp_path / "gone.wav")],
    ):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 1 and "not found" in _one_error_line(res.output), (args, res.output)
