"""The main job: the phased migration on the sample shop database, embedded defaults.

Starts a throwaway PostgreSQL when no source is given, loads the sample,
runs its workload, then runs every phase that exists and prints each
phase's result. A phase is a small function registered in :data:`PHASES`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from pg2edge import sample, workload
from pg2edge.config import Config
from pg2edge.pgcluster import LocalCluster


@dataclass
class DemoContext:
    """What the phases share: the source, the work folder, the config and a console."""

    dsn: str
    workdir: Path
    config: Config
    console: Console
    results: dict[str, object] = field(default_factory=dict)


def _phase_analyze(ctx: DemoContext) -> None:
    from analyzers import analyze
    from analyzers.report import print_report

    report = analyze(ctx.dsn, config=ctx.config.analyze)
    ctx.results["analyze"] = report
    print_report(report, ctx.console)


Phase = tuple[str, Callable[[DemoContext], None]]
PHASES: list[Phase] = [
    ("Phase 1 - analyze: rank tables by read/write ratio", _phase_analyze),
]


@contextlib.contextmanager
def _source(dsn: str | None, console: Console) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    console.print("No --source given: starting a throwaway PostgreSQL (wal_level=logical) ...")
    with LocalCluster() as cluster:
        console.print(f"  PostgreSQL on 127.0.0.1:{cluster.port}")
        yield cluster.dsn()


def run_demo(*, source: str | None, workdir: Path, config: Config, console: Console | None = None,
             scale: float = 1.0) -> DemoContext:
    """Run the sample migration; returns the context holding each phase's result."""
    console = console or Console()
    workdir.mkdir(parents=True, exist_ok=True)
    with _source(source, console) as dsn:
        started = time.monotonic()
        counts = sample.install(dsn)
        console.print(f"Loaded the sample shop database: {sum(counts.values())} rows in {len(counts)} tables")
        workload.run(dsn, scale=scale)
        console.print("Ran the sample workload (reads and writes at the article's ratios)")
        ctx = DemoContext(dsn=dsn, workdir=workdir, config=config, console=console)
        for title, phase in PHASES:
            console.print(Rule(title))
            phase(ctx)
        console.print(Rule())
        console.print(f"Demo finished in {time.monotonic() - started:.1f} s; files in {workdir}")
    return ctx
