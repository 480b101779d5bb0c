"""A broken install is never silent: a command whose module cannot be imported stays listed as
unavailable and fails in one line naming the missing module and `make install`."""

from __future__ import annotations

import importlib

import pytest
import typer
from typer.testing import CliRunner

from deepmlf_cli.app import COMMAND_MODULES, app, register_commands

runner = CliRunner()


def _app_missing(monkeypatch, command: str, missing: str | None, error: type[ImportError] = ModuleNotFoundError):
    """A fresh app with `describe` and `command` registered, `command`'s import failing on `missing`."""
    real = importlib.import_module

    def import_module(name, *args, **kwargs):
        if name == f"deepmlf_cli.commands.{command}":
            raise error(f"No module named '{missing}'", name=missing)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", import_module)
    fresh = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    register_commands(fresh, ("describe", command))
    monkeypatch.undo()
    return fresh


def test_a_missing_dependency_makes_its_command_fail_in_one_line(monkeypatch):
    broken = _app_missing(monkeypatch, "compare", "mediapipe")
    result = runner.invoke(broken, ["compare", "runs/a", "--json"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "deepmlf compare" in lines[0] and "'mediapipe'" in lines[0] and "make install" in lines[0]
    listing = runner.invoke(broken, ["--help"])
    assert listing.exit_code == 0 and "Unavailable" in listing.output and "mediapipe" in listing.output
    assert runner.invoke(broken, ["describe", "--help"]).exit_code == 0  # the other commands keep working


def test_a_command_file_missing_from_the_checkout_is_named(monkeypatch):
    broken = _app_missing(monkeypatch, "compare", "deepmlf_cli.commands.compare")
    result = runner.invoke(broken, ["compare"])
    assert result.exit_code == 1 and "'deepmlf_cli.commands.compare'" in result.output


def test_other_import_errors_propagate(monkeypatch):
    with pytest.raises(ImportError, match="No module named"):
        _app_missing(monkeypatch, "compare", "something", error=ImportError)


def test_this_install_has_every_command():
    names = {c.name for c in app.registered_commands}
    assert set(COMMAND_MODULES) <= names
    unavailable = [c.name for c in app.registered_commands if c.callback.__name__ == "unavailable"]
    assert unavailable == []
