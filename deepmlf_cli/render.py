"""Rich rendering shared by commands: progress bars for training, metric tables."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(highlight=False)


class EpochProgress:
    """Training callbacks drawing one bar per epoch with the running loss and validation metrics."""

    def __init__(self, label: str, progress: Progress, primary: str) -> None:
        self.label = label
        self.progress = progress
        self.primary = primary
        self.task = None
        self.losses: list[float] = []

    def on_epoch_start(self, epoch: int, n_batches: int) -> None:
        self.losses = []
        self.task = self.progress.add_task(f"{self.label} epoch {epoch}", total=n_batches, info="")

    def on_batch(self, loss: float) -> None:
        self.losses.append(loss)
        self.progress.update(self.task, advance=1, info=f"loss {sum(self.losses) / len(self.losses):.4f}")

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        value = record["valid"].get(self.primary, float("nan"))
        mark = " [green]★[/]" if record.get("best") else ""
        self.progress.update(self.task, info=f"loss {record['train_loss']:.4f} · valid L1 {record['valid_l1']:.4f}"
                                             f" · {self.primary} {value:.4f}{mark}")
        self.progress.stop_task(self.task)


def make_progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"), console=console, disable=quiet, transient=False)


def _fmt(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def results_table(results: dict[str, Any], title: str) -> Table:
    """One row per primary metric of the scheme: every seed's value, then mean ± std.

    Metrics are rows (not columns) so their names are never cut, even in 80 columns.
    """
    names = [n for n in results["primary"] if n in results["mean"]]
    table = Table(title=title)
    table.add_column("metric", no_wrap=True)
    for seed in results["seeds"]:
        table.add_column(f"seed {seed}", justify="right")
    table.add_column("mean ± std", justify="right", style="bold", no_wrap=True)
    for name in names:
        table.add_row(name, *[_fmt(row[name]) for row in results["seeds"].values()],
                      f"{_fmt(results['mean'][name])} ± {_fmt(results['std'][name])}")
    return table


def transposed_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """Runs as columns, fields as rows: `rows` are [name, value...] per run under `header`.

    A comparison of many runs on many metrics does not fit 80 columns with one
    run per row; one run per column, each "mean ± std" on two lines, fits six runs.
    """
    table = Table(title=title)
    table.add_column(header[0], no_wrap=True)
    for row in rows:
        table.add_column(row[0], justify="right", overflow="fold")
    for i, field_name in enumerate(header[1:], start=1):
        table.add_row(field_name, *[row[i].replace(" ± ", "\n± ") for row in rows])
    return table


def metrics_table(metrics: dict[str, float], names: list[str], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in names:
        if name in metrics:
            table.add_row(name, _fmt(metrics[name]))
    return table
