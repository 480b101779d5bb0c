"""Commands parse, validate, call one library function and render (issue 13 item 4).

The batch commands' work lives in deepmlf_cli/workflows (writing no files),
so it can be called and checked without the command line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import media as tm  # noqa: E402

COMMANDS = Path(__file__).resolve().parents[1] / "deepmlf_cli" / "commands"
THIN = ("predict", "transcribe")  # extract joins once its choices come from extractors.choices


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_batch_commands_are_thin_and_import_no_other_command():
    for name in ("predict", "transcribe", "extract"):
        path = COMMANDS / f"{name}.py"
        others = {m for m in _imports(path) if m.startswith("deepmlf_cli.commands")}
        assert not others, f"{path.name} imports {others}; shared options go in deepmlf_cli/options.py"
    for name in THIN:
        lines = len((COMMANDS / f"{name}.py").read_text().splitlines())
        assert lines <= 80, f"commands/{name}.py has {lines} lines; move its work into deepmlf_cli/workflows"


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
    assert [(r["key"], r["status"], r["text"]) for r in rows] == [("a", "done", "hello there"), ("b", "done", "good day")]
    assert rows[0]["rendered"].startswith("1\n00:00:00,000 --> ") and "file" not in rows[0]
    written = {}
    rows = transcribe_paths(folder, "txt", whisper_model="unused",
                            write=lambda key, text: written.setdefault(key, text) and tmp_path / f"{key}.txt")
    assert written == {"a": "hello there\n", "b": "good day\n"}
    assert [r["file"] for r in rows] == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")] and "rendered" not in rows[0]
