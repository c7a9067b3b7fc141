"""The export's console output: a rich progress display while it works, one closing table."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


@dataclass(frozen=True)
class Row:
    """One file of the export, as the closing table shows it."""

    file: str
    size_bytes: int
    opset: int
    providers: list[str]
    max_abs_diff: float               # from the Keras model's outputs
    top1_agreement: float
    top1_vs_float32: float | None = None


class Steps:
    """A spinner per step, ticked off with its duration as each finishes."""

    def __init__(self, console: Console):
        self._progress = Progress(SpinnerColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                                  console=console, transient=False)

    def __enter__(self) -> "Steps":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[None]:
        task = self._progress.add_task(description, total=1)
        try:
            yield
        except BaseException:
            self._progress.update(task, description=f"[red]{description} (failed)")
            self._progress.stop_task(task)
            raise
        self._progress.update(task, completed=1, description=f"[green]{description}")
        self._progress.stop_task(task)


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def table(rows: list[Row], title: str) -> Table:
    """file, size, opset, providers it loads in, max |diff| from Keras, top-1 agreements."""
    t = Table(title=title)
    t.add_column("file", min_width=max((len(r.file) for r in rows), default=4))
    for column in ("size", "opset", "loads in", "max |diff| vs Keras", "top-1 = Keras", "top-1 = float32"):
        t.add_column(column, justify="left" if column == "loads in" else "right")
    for r in rows:
        t.add_row(r.file, _mb(r.size_bytes), str(r.opset),
                  ", ".join(p.removesuffix("ExecutionProvider") for p in r.providers) or "-",
                  f"{r.max_abs_diff:.1e}", f"{r.top1_agreement:.2%}",
                  "-" if r.top1_vs_float32 is None else f"{r.top1_vs_float32:.2%}")
    return t
