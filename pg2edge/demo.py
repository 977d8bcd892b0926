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
    edge: bool = False  # --edge: also stream the moved tables into a local sqld (libSQL server)

    @property
    def replica(self) -> Path:
        return self.workdir / "shop.db"


def _phase_analyze(ctx: DemoContext) -> None:
    from pg2edge.analyzers import analyze
    from pg2edge.analyzers.report import print_report

    report = analyze(ctx.dsn, config=ctx.config.analyze)
    ctx.results["analyze"] = report
    print_report(report, ctx.console)


def _phase_dual_write(ctx: DemoContext) -> None:
    from pg2edge.analyzers.verdicts import MOVABLE
    from pg2edge.pipeline.daemon import run_sync
    from pg2edge.pipeline.lsn import format_lsn
    from pg2edge.pipeline.sources.snapshot import run_snapshot
    from pg2edge.pipeline.status import replica_status

    report = ctx.results["analyze"]
    tables = [t.table for t in report.tables if t.verdict in MOVABLE and not t.blockers]  # type: ignore[attr-defined]
    ctx.console.print(f"Moving the candidates: {', '.join(tables)}")
    snap = run_snapshot(dsn=ctx.dsn, target=ctx.replica, tables=",".join(tables), options=ctx.config.translate,
                        say=lambda line: ctx.console.print(f"  {line}", highlight=False))
    ctx.console.print(f"Snapshot: {snap.rows} rows in {len(snap.tables)} tables in {snap.seconds:.2f} s "
                      f"(consistent with slot {snap.slot} at {format_lsn(snap.consistent_lsn)})")
    workload.run(ctx.dsn, scale=0.2)
    ctx.console.print("Ran more of the workload on PostgreSQL; streaming the changes ...")
    synced = run_sync(dsn=ctx.dsn, target=ctx.replica, options=ctx.config.translate, until_caught_up=True,
                      say=lambda line: ctx.console.print(f"  {line}", highlight=False))
    status = replica_status(ctx.replica, source=ctx.dsn)
    ctx.results["sync"] = synced
    ctx.console.print(f"Streamed {synced.transactions} transactions ({synced.rows} row changes); replica at "
                      f"{status.visible_lsn}, lag {status.lag_bytes} bytes, slot retains "
                      f"{status.retained_wal_bytes} bytes of WAL. Replica file: {ctx.replica}")


def _phase_validate(ctx: DemoContext) -> None:
    from pg2edge.validators import render, validate

    report = validate(ctx.dsn, ctx.replica, mode="full", options=ctx.config.translate)
    ctx.results["validate"] = report
    ctx.console.print(render(report, "table"), highlight=False)


def _phase_cutover(ctx: DemoContext) -> None:
    from pg2edge.pipeline.cutover.actions import drain, promote
    from pg2edge.pipeline.cutover.checklist import render
    from pg2edge.pipeline.cutover.freeze import freeze, published_tables
    from pg2edge.pipeline.cutover.gates import run_checklist

    checklist = run_checklist(ctx.dsn, ctx.replica, thresholds=ctx.config.cutover, options=ctx.config.translate)
    ctx.results["check"] = checklist
    ctx.console.print(render(checklist, "table", width=ctx.console.width), highlight=False)
    if not checklist.ok:
        ctx.console.print("The checklist failed: not cutting over (fix the failed gates, then `pg2edge cutover check`)")
        return
    frozen = freeze(ctx.dsn, published_tables(ctx.dsn, replica=ctx.replica), replica=ctx.replica)
    ctx.console.print(f"Froze {', '.join(frozen.tables)} on PostgreSQL (writes refused) at {frozen.lsn}")
    drained = drain(ctx.dsn, ctx.replica, timeout=60)
    promoted = promote(ctx.dsn, ctx.replica)
    ctx.results["promote"] = promoted
    for change in drained.changes + promoted.changes:
        ctx.console.print(f"  {change}", highlight=False)
    ctx.console.print(f"Cut over: the replica serves {', '.join(frozen.tables)}. Undo: {promoted.undo}",
                      highlight=False)


def _phase_edge(ctx: DemoContext) -> None:
    """sqld serves the moved tables; pg2edge streams into it over Hrana; an app client reads a row."""
    import os

    from pg2edge.pipeline.daemon import run_sync
    from pg2edge.pipeline.remote import HranaClient, parse_target
    from pg2edge.sqld import LocalSqld

    say = lambda line: ctx.console.print(f"  {line}", highlight=False)  # noqa: E731
    report = ctx.results["analyze"]
    from pg2edge.analyzers.verdicts import MOVABLE

    tables = [t.table for t in report.tables if t.verdict in MOVABLE and not t.blockers]  # type: ignore[attr-defined]
    server = LocalSqld(ctx.workdir / "sqld")
    url = server.start()
    ctx.results["edge_server"] = server
    ctx.console.print(f"sqld (libSQL server) serves {url}; syncing the moved tables into it over Hrana ...")
    os.environ.setdefault("PG2EDGE_STAGING_DIR", str(ctx.workdir / "staging"))
    synced = run_sync(dsn=ctx.dsn, target=url, tables=",".join(tables), options=ctx.config.translate,
                      until_caught_up=True, say=say)
    ctx.results["edge_sync"] = synced
    first = tables[0].split(".")[-1] if tables else None
    if first:
        from pg2edge.translators.quoting import quote_ident

        with HranaClient(parse_target(url, env={})) as client:
            row = client.execute(f"SELECT * FROM {quote_ident(first)} ORDER BY rowid LIMIT 1")
        ctx.results["edge_row"] = dict(list(zip(row.columns, row.rows[0], strict=True))[:3]) if row.rows else None
        ctx.console.print(f"An app reading {first} from {url} sees: {ctx.results['edge_row']}", highlight=False)
        node = _node_read(ctx, url, first)
        if node:
            ctx.console.print(f"@libsql/client embedded replica (createClient({{url: 'file:...', syncUrl: "
                              f"'{url}'}}), sync()) read: {node}", highlight=False)
    ctx.console.print(f"Edge: `pg2edge sync --source DSN --target {url}` keeps it in sync; "
                      f"`pg2edge wait --target {url} --lsn LSN` gives read-your-writes.", highlight=False)


def _node_read(ctx: DemoContext, url: str, table: str) -> object:
    """The seed's client reading the row, when Node and tests/node's @libsql/client are installed."""
    import json
    import shutil
    import subprocess

    script = Path(__file__).resolve().parent.parent / "tests" / "node" / "read_replica.mjs"
    node = shutil.which("node")
    if node is None or not (script.parent / "node_modules" / "@libsql" / "client").is_dir():
        return None
    proc = subprocess.run([node, str(script), str(ctx.workdir / "app-replica.db"), url,
                           f'SELECT * FROM "{table}" ORDER BY rowid LIMIT 1'], capture_output=True, text=True, timeout=120,
                          cwd=script.parent)
    if proc.returncode != 0:
        return None
    rows = json.loads(proc.stdout.strip().splitlines()[-1])["results"][0]["rows"]
    return dict(list(rows[0].items())[:3]) if rows else None


Phase = tuple[str, Callable[[DemoContext], None]]
PHASES: list[Phase] = [
    ("Phase 1 - analyze: rank tables by read/write ratio", _phase_analyze),
    ("Phase 2 - dual-write: snapshot the candidates into SQLite, then stream every change", _phase_dual_write),
    ("Phase 3 - validate: full checksum diff of replica and source at a known LSN", _phase_validate),
    ("Phase 4 - cutover: checklist, freeze writes on PostgreSQL, drain, back up, promote the replica",
     _phase_cutover),
]
EDGE_PHASE: Phase = ("The edge (--edge): sqld serves the moved tables, pg2edge streams into it, a client reads",
                     _phase_edge)


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
             scale: float = 1.0, edge: bool = False) -> DemoContext:
    """Run the sample migration; returns the context holding each phase's result."""
    console = console or Console()
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("shop.db*"):  # a replica of an earlier demo's (throwaway) source
        old.unlink()
    with _source(source, console) as dsn:
        started = time.monotonic()
        counts = sample.install(dsn)
        console.print(f"Loaded the sample shop database: {sum(counts.values())} rows in {len(counts)} tables")
        workload.run(dsn, scale=scale)
        console.print("Ran the sample workload (reads and writes at the article's ratios)")
        ctx = DemoContext(dsn=dsn, workdir=workdir, config=config, console=console, edge=edge)
        try:
            for title, phase in PHASES + ([EDGE_PHASE] if edge else []):
                console.print(Rule(title))
                phase(ctx)
        finally:
            server = ctx.results.get("edge_server")
            if server is not None:
                server.stop()  # type: ignore[attr-defined]
        console.print(Rule())
        console.print(f"Demo finished in {time.monotonic() - started:.1f} s; files in {workdir}")
    return ctx
