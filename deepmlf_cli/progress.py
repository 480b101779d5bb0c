"""The batch commands' bar (on stderr), fed by a workflow's `on_plan` / `on_result` callbacks."""

from __future__ import annotations


class ClipProgress:
    """A bar of clips done (M/N), failures so far and time elapsed (with `rate`: clips/s and time left);
    nothing when quiet. Built by `deepmlf_cli.render.make_progress` on `stderr`.

    Use as a context (the bar stops, even on an error) and pass `on_plan` and
    `on_result` to the workflow: the bar appears once the batch is planned, so
    an error before that prints no empty bar. A batch of fewer than
    `min_total` clips shows none (one clip's transcript needs no bar).
    Results are dicts with a "status" key or objects with a `status` attribute.
    """

    def __init__(
        self, label: str, quiet: bool = False, transient: bool = True, min_total: int = 1, rate: bool = False
    ) -> None:
        self.label, self.quiet, self.transient, self.min_total, self.rate = label, quiet, transient, min_total, rate
        self.progress = None
        self.task = None
        self.failed = self.done = 0

    def on_plan(self, total: int, already: int = 0) -> None:
        if self.quiet or total < self.min_total:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from deepmlf_cli.render import make_progress, stderr

        columns = (
            TextColumn(f"[bold]{self.label}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            *([TextColumn("{task.fields[rate]:.2f} clips/s")] if self.rate else []),
            TextColumn("[red]{task.fields[failed]} failed[/]"),
            TimeElapsedColumn(),
            *([TimeRemainingColumn()] if self.rate else []),
        )
        self.progress = make_progress(False, stderr, columns, transient=self.transient)
        self.progress.start()
        fields = {"rate": 0.0, "failed": 0} if self.rate else {"failed": 0}
        self.task = self.progress.add_task(self.label, total=total, **fields)

    def on_result(self, result) -> None:
        status = result["status"] if isinstance(result, dict) else result.status
        self.failed += status == "failed"
        self.done += status == "done"
        if self.progress is not None:
            fields = {"failed": self.failed}
            if self.rate:
                fields["rate"] = self.done / (self.progress.tasks[self.task].elapsed or 1e-9)
            self.progress.update(self.task, advance=1, **fields)

    def __enter__(self) -> ClipProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
