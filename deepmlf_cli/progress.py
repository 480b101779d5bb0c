"""Progress bars (on stderr) fed by a batch workflow's `on_plan` / `on_result` callbacks."""

from __future__ import annotations


class ClipProgress:
    """A bar of clips done (M/N), failures so far and time elapsed; nothing when quiet.

    Use as a context (the bar stops, even on an error) and pass `on_plan` and
    `on_result` to the workflow: the bar appears once the batch is planned, so
    an error before that prints no empty bar. A batch of fewer than
    `min_total` clips shows none (one clip's transcript needs no bar).
    """

    def __init__(self, label: str, quiet: bool = False, transient: bool = True, min_total: int = 1) -> None:
        self.label, self.quiet, self.transient, self.min_total = label, quiet, transient, min_total
        self.progress = None
        self.task = None
        self.failed = 0

    def on_plan(self, total: int) -> None:
        if self.quiet or total < self.min_total:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from deepmlf_cli.errors import err_console

        self.progress = Progress(TextColumn(f"[bold]{self.label}[/]"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("[red]{task.fields[failed]} failed[/]"), TimeElapsedColumn(),
                                 console=err_console, transient=self.transient)
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=total, failed=0)

    def on_result(self, result: dict) -> None:
        self.failed += result["status"] == "failed"
        if self.progress is not None:
            self.progress.update(self.task, advance=1, failed=self.failed)

    def __enter__(self) -> "ClipProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_with_progress(run, quiet: bool, **kwargs):
    """Call run(**kwargs, on_plan=..., on_result=...) under a Rich progress bar (clips/s, failures)."""
    if quiet:
        return run(**kwargs)
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from deepmlf_cli.errors import err_console
    from deepmlf_cli.render import make_progress

    state = {"failed": 0, "done": 0}
    with make_progress(False, err_console, (
        TextColumn("[bold]extract[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} clips/s"),
        TextColumn("[red]{task.fields[failed]} failed[/]"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )) as progress:
        # The bar appears once the batch is planned: an error before that prints no empty "0/?" bar.
        task = None

        def on_plan(total: int, already: int) -> None:
            nonlocal task
            task = progress.add_task("extract", total=total, rate=0.0, failed=0)

        def on_result(result) -> None:
            state["failed"] += result.status == "failed"
            state["done"] += result.status == "done"
            elapsed = progress.tasks[0].elapsed or 1e-9
            progress.update(task, advance=1, failed=state["failed"], rate=state["done"] / elapsed)

        return run(**kwargs, on_plan=on_plan, on_result=on_result)
