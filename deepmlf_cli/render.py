"""The CLI's two consoles, its one progress factory, and the metric tables.

`stdout` carries results (tables, JSON via typer.echo) and the training bars;
`stderr` carries errors, warnings and the bars of the batch commands (extract,
transcribe, predict), so `--json` on stdout stays parseable while they run.
Every other module prints through these two and builds bars with
`make_progress` (tests/test_thin_commands.py checks it).
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

# soft_wrap: a long line (a path) is never broken by a newline at the console's width
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


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
        self.progress.update(
            self.task,
            info=f"loss {record['train_loss']:.4f} · valid L1 {record['valid_l1']:.4f}"
            f" · {self.primary} {value:.4f}{mark}",
        )
        self.progress.stop_task(self.task)


class _PlainTask:
    def __init__(self, description: str, total: int | None, fields: dict[str, Any]) -> None:
        self.description, self.total, self.fields = description, total, dict(fields)
        self.completed = 0
        self.started = time.monotonic()
        self.last_line = self.started
        self.finished = False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class PlainProgress:
    """What a progress bar becomes without a terminal (a log file, a pipe): whole plain lines.

    A line per task when it stops (an epoch's summary), one every `interval`
    seconds while it runs, and one at the end for tasks never stopped; never
    a bar redrawn or cut to the width of a terminal that is not there. Takes
    the calls `rich.progress.Progress` takes here (add_task, update,
    stop_task, tasks, the with-block).
    """

    def __init__(self, console: Console, interval: float = 30.0) -> None:
        self.console = console
        self.interval = interval
        self.tasks: list[_PlainTask] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task_id, task in enumerate(self.tasks):
            if not task.finished and (task.completed or task.total is not None):
                self.stop_task(task_id)

    def add_task(self, description: str, total: int | None = None, **fields: Any) -> int:
        self.tasks.append(_PlainTask(description, total, fields))
        return len(self.tasks) - 1

    def update(self, task_id: int, total: int | None = None, advance: int = 0, **fields: Any) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        task.completed += advance
        task.fields.update(fields)
        if advance and time.monotonic() - task.last_line >= self.interval:
            self._line(task)

    def stop_task(self, task_id: int) -> None:
        task = self.tasks[task_id]
        if not task.finished:
            task.finished = True
            self._line(task)

    def _line(self, task: _PlainTask) -> None:
        task.last_line = time.monotonic()
        minutes, seconds = divmod(int(task.elapsed), 60)
        parts = [
            task.description,
            f"{task.completed}/{task.total if task.total is not None else '?'}",
            f"{minutes}:{seconds:02d}",
        ]
        for key, value in task.fields.items():
            if key == "info":  # our own text, with markup for the bar (a green ★): keep the text only
                parts.append(Text.from_markup(str(value)).plain)
            else:
                parts.append(f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}")
        # out(): no markup, no wrapping, no cropping; the text is the user's (file names, losses)
        self.console.out("  ".join(p for p in parts if p), highlight=False)


def make_progress(quiet: bool, on: Console | None = None, columns: tuple | None = None, transient: bool = False):
    """The one progress factory: bars on a terminal; plain periodic lines (`PlainProgress`) in a log file;
    nothing when quiet.

    `on` is `stdout` (training) or `stderr` (batch commands); `columns` are Rich
    columns (default: description, bar, M/N, elapsed, info field). A `transient`
    bar vanishes when done, so in a log file it writes nothing.
    """
    on = on or stdout
    if not quiet and not on.is_terminal and not transient:
        return PlainProgress(on)
    columns = columns or (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    return Progress(*columns, console=on, disable=quiet, transient=transient)


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
        table.add_row(
            name,
            *[_fmt(row[name]) for row in results["seeds"].values()],
            f"{_fmt(results['mean'][name])} ± {_fmt(results['std'][name])}",
        )
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
