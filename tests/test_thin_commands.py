"""Commands parse, validate, call one library function and render (issue 13 item 4).

The commands' work lives in deepmlf_cli/workflows (predict and transcribe writing no
files), so it can be called and checked without the command line; what they print goes
through the two consoles and the one progress factory of deepmlf_cli/render.py.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import media as tm  # noqa: E402

CLI = Path(__file__).resolve().parents[1] / "deepmlf_cli"
COMMANDS = CLI / "commands"
COMMAND_FILES = sorted(p for p in COMMANDS.glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_every_command_is_thin_and_imports_no_other_command():
    from deepmlf_cli.app import COMMAND_MODULES

    assert {p.stem for p in COMMAND_FILES} == set(COMMAND_MODULES)  # the check covers every command
    for path in COMMAND_FILES:
        others = {m for m in _imports(path) if m.startswith("deepmlf_cli.commands")}
        assert not others, f"{path.name} imports {others}; shared options go in deepmlf_cli/options.py"
        # The body is the command's work; its signature (the options, one per few lines as the
        # formatter writes them) is declaration, not work.
        tree = ast.parse(path.read_text())
        for fn in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
            lines = fn.end_lineno - fn.body[0].lineno + 1
            assert lines <= 50, (
                f"commands/{path.name}: {fn.name} has {lines} lines of body; move its work into deepmlf_cli/workflows"
            )


def test_one_module_builds_the_consoles_and_the_progress_bars():
    """deepmlf_cli/render.py owns `stdout`, `stderr` and `make_progress`; nothing else builds a Console or a Progress."""
    built = re.compile(r"\b(Console|Progress)\(")  # EpochProgress( / ClipProgress( are adapters, not builders
    found = {str(p.relative_to(CLI)): sorted(set(built.findall(p.read_text()))) for p in CLI.rglob("*.py")}
    assert {name: hits for name, hits in found.items() if hits} == {"render.py": ["Console", "Progress"]}


def test_training_bars_go_to_stdout_and_the_batch_bars_to_stderr(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import models.training.experiment
    from deepmlf_cli import render
    from deepmlf_cli.progress import ClipProgress
    from deepmlf_cli.workflows.train import train_with_progress

    made, real = [], render.make_progress

    def spy(*args, **kwargs):
        bar = real(*args, **kwargs)
        made.append(bar.console)
        return bar

    monkeypatch.setattr(render, "make_progress", spy)
    monkeypatch.setattr(models.training.experiment, "train_run", lambda *a, progress, **k: progress(0) and {"mean": {}})
    resolved = SimpleNamespace(spec=None, run_dir=tmp_path, verdict=None, preset=None)
    assert train_with_progress(SimpleNamespace(scheme="sims"), resolved) == {"mean": {}}
    with ClipProgress("predict") as bar:
        bar.on_plan(2)
        bar.on_result({"status": "failed"})
    assert made == [render.stdout, render.stderr] and bar.failed == 1
    assert not render.stdout.stderr and render.stderr.stderr


def test_transcribe_workflow_returns_rows_and_writes_through_the_hook_only(tmp_path):
    from deepmlf_cli.workflows.transcribe import transcribe_paths

    folder = tmp_path / "in"
    for name, text in (("a", "hello there"), ("b", "good day")):
        tm.make_audio_only(folder / f"{name}.wav", 0.3).with_suffix(".txt").write_text(text)
    before = sorted(tmp_path.rglob("*"))
    planned = []
    # sidecars for every clip: Whisper is never needed, so a model that does not exist is never checked
    rows = transcribe_paths(folder, "srt", whisper_model=str(tmp_path / "no-whisper"), on_plan=planned.append)
    assert sorted(tmp_path.rglob("*")) == before and planned == [2]
    assert [(r["key"], r["status"], r["text"]) for r in rows] == [
        ("a", "done", "hello there"),
        ("b", "done", "good day"),
    ]
    assert rows[0]["rendered"].startswith("1\n00:00:00,000 --> ") and "file" not in rows[0]
    written = {}
    rows = transcribe_paths(
        folder,
        "txt",
        whisper_model="unused",
        write=lambda key, text: written.setdefault(key, text) and tmp_path / f"{key}.txt",
    )
    assert written == {"a": "hello there\n", "b": "good day\n"}
    assert [r["file"] for r in rows] == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")] and "rendered" not in rows[0]


def test_describe_workflow_counts_without_the_command_line():
    from deepmlf_cli.workflows.describe import describe_preset

    recipe, counts = describe_preset("sims", lm="gpt2", mm_layers="5..11", n_fusion=3)
    assert recipe["model"]["mm_layers"] == [5, 6, 7, 8, 9, 10, 11] and recipe["model"]["n_fusion"] == 3
    assert list(counts["mm_block_parameters"]) == [str(k) for k in range(5, 12)]
    assert counts["parameters"]["frozen_lm"]["trainable"] == 0 and counts["lm_layers"] == 12
