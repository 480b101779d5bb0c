"""`deepmlf compare`: several runs' test metrics side by side (mean ± std over seeds), as a table and a CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import Debug, JsonOutput


def compare(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run directories written by `deepmlf train` (or study variants).")
    ],
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Also write the comparison to this CSV file.")] = None,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Compare runs: primary metrics plus 3-class Acc_3/F1_3, mean ± std over each run's seeds."""
    with handle_errors(debug):
        from deepmlf_cli.render import stdout, transposed_table
        from models.evaluation.compare import compare_runs, comparison_csv, table_rows
        from models.io import atomic_write_text, check_writable_file

        if csv_file is not None:
            check_writable_file(csv_file, "--csv")
        comparison = compare_runs(run_dirs)
        if csv_file is not None:
            atomic_write_text(csv_file, comparison_csv(comparison))
        if as_json:
            typer.echo(json.dumps(comparison.to_dict(), indent=2))
            return
        stdout.print(
            transposed_table(
                f"Test split, mean ± std over seeds ({comparison.scheme} metrics)",
                ["run", "model", "seeds", *comparison.metrics],
                table_rows(comparison),
            )
        )
        if csv_file is not None:
            stdout.print(f"CSV written to [bold]{csv_file}[/]")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
