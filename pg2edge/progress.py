"""Rich progress bars for table copies: one bar per table with rows/s."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class _Spec(Protocol):
    label: str
    estimated_rows: int


@contextmanager
def table_progress(*, enabled: bool = True) -> Iterator[Any]:
    """Yields ``advance(spec, rows)`` for pipeline.copier's ``on_progress``."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
    with Progress(*columns, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(spec: _Spec, rows: int) -> None:
            if spec.label not in tasks:
                tasks[spec.label] = progress.add_task(spec.label, total=spec.estimated_rows or None, rate="")
            task_id = tasks[spec.label]
            progress.advance(task_id, rows)
            task = progress.tasks[task_id]
            speed = task.speed or 0.0
            progress.update(task_id, rate=f"{speed:,.0f} rows/s")

        yield advance
