"""Online backup of a replica into a local SQLite file, recorded in the replica's state table.

* A replica file: SQLite's backup API (one read transaction, every page).
* A remote replica (libSQL/Turso/sqld/tursodb over Hrana, D1 through the pg2edge
  Worker): every table read page by page (keyset order) over the same read
  connection ``status`` and ``validate`` use, written into a new local file with
  its schema, indexes, views, triggers and ``sqlite_sequence``. Neither transport
  keeps one read snapshot across requests (tursodb has no interactive streams, D1
  none at all), so the copy is checked instead: what pg2edge's writers change
  (the applied commit position, the retry queue, the state records, the
  post-promote write log) is read before and after; when it moved, the copy is
  discarded and taken again (``ATTEMPTS`` times). On D1, integers beyond 2^53 and
  infinite REALs are read as marked text (``pipeline.d1.client.exact_column``).
  The file appears under its name only once complete.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw

from pg2edge.pipeline import state
from pg2edge.pipeline.cutover import CUTOVER_SCOPE
from pg2edge.pipeline.cutover.errors import BackupError
from pg2edge.pipeline.remote import is_remote
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

BACKUP_RECORD = "backup"


ATTEMPTS = 5  # copies of a remote replica taken before giving up because it kept changing
PAGE_ROWS = 500  # rows per read request of a remote copy
_NOT_COPIED = ("sqlite_", "_cf_", "libsql_")  # SQLite's own, D1's and libSQL's internal tables


def default_backup_path(target: object, *, now: datetime | None = None) -> Path:
    """``<target>.backup-<UTC timestamp>.db`` next to the replica; for a remote target, in the current
    directory, named after its host (and path)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    if is_remote(target):
        label = str(getattr(target, "label", target)).split("://", 1)[1]
        return Path.cwd() / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', label).strip('_')}.backup-{stamp}.db"
    path = Path(str(target))
    return path.with_name(f"{path.name}.backup-{stamp}.db")


def backup_replica(target: object, output: str | Path | None = None) -> Path:
    """Copy the replica to ``output`` (default :func:`default_backup_path`) while writers may keep going.

    The copy is one consistent snapshot (see the module docstring). The backup is
    recorded in the replica under ``cutover/backup`` with its path, time and the
    source position it holds.
    """
    remote = is_remote(target)
    if not remote and not Path(str(target)).is_file():
        raise BackupError(f"replica file {target} does not exist")
    out = Path(output) if output is not None else default_backup_path(target)
    if out.exists():
        raise BackupError(f"backup file {out} already exists; choose another path")
    if not out.parent.is_dir():
        raise BackupError(f"directory {out.parent} does not exist")
    if remote:
        return _backup_remote(target, out)
    target = Path(str(target))
    src = open_replica(target, busy_timeout_ms=30_000)  # the sync daemon may be writing
    try:
        position = _copy(src, target, out)
        record = {"path": str(out.resolve()), "time": datetime.now(UTC).isoformat(timespec="seconds"),
                  "position": None if position is None else asdict(position)}
        with src:
            state.write_record(src, CUTOVER_SCOPE, BACKUP_RECORD, record)
    finally:
        src.close()
    log.info("replica %s backed up to %s", target, out)
    return out


def _copy(src: apsw.Connection, target: Path, out: Path) -> state.Position | None:
    dest = apsw.Connection(str(out))
    try:
        with dest.backup("main", src, "main") as job:
            job.step(-1)
        position = state.read_position(dest)  # the position the copy holds, not the live one
        problems = [r[0] for r in dest.execute("PRAGMA integrity_check") if r[0] != "ok"]
    except apsw.Error as exc:
        dest.close()
        out.unlink(missing_ok=True)
        raise BackupError(f"cannot back up {target} to {out}: {exc}") from exc
    dest.close()
    if problems:
        raise BackupError(f"backup {out} fails integrity_check: {'; '.join(problems[:5])}")
    return position


def restore_hint(target: object, backup: Path) -> str:
    """How an operator restores ``backup`` (a SQLite file) as ``target``."""
    if not is_remote(target):
        return f"stop the sync daemon and copy {backup} over {target}"
    if getattr(target, "kind", None) == "d1":
        return (f"into an empty D1 database: pg2edge export --target {backup} --format d1 --output restore.sql, "
                "then wrangler d1 execute DB --remote --file restore.sql")
    return (f"{backup} is a SQLite file: create a database from it (turso db create NAME --from-file {backup}; "
            "for sqld, its --db-path seeded with it) and point the application at it")


# -- a remote replica -------------------------------------------------------------------
def _backup_remote(target: Any, out: Path) -> Path:
    from pg2edge.pipeline.status import open_writable

    position, rows = copy_remote(target, out)
    record = {"path": str(out.resolve()), "time": datetime.now(UTC).isoformat(timespec="seconds"),
              "position": None if position is None else asdict(position)}
    db = open_writable(target)
    try:
        with db:
            state.write_record(db, CUTOVER_SCOPE, BACKUP_RECORD, record)
    finally:
        db.close()
    log.info("remote replica %s backed up to %s (%d rows)", getattr(target, "label", target), out, rows)
    return out


def copy_remote(target: Any, out: Path) -> tuple[state.Position | None, int]:
    """Copy the remote replica ``target`` into the new local file ``out`` (see the module docstring);
    returns the position the copy holds and the rows copied. Nothing is recorded on the remote."""
    from pg2edge.pipeline.status import open_readonly

    label = getattr(target, "label", target)
    exact = getattr(target, "kind", None) == "d1"
    partial = out.with_name(out.name + ".partial")
    src = open_readonly(target)  # a database pg2edge never wrote is refused by name
    try:
        for attempt in range(1, ATTEMPTS + 1):
            partial.unlink(missing_ok=True)
            before = _fingerprint(src)
            dest = apsw.Connection(str(partial))
            try:
                rows = _copy_remote(src, dest, exact=exact)
                after = _fingerprint(src)
                position = state.read_position(dest)
                problems = [r[0] for r in dest.execute("PRAGMA integrity_check") if r[0] != "ok"]
            except BaseException:
                dest.close()
                partial.unlink(missing_ok=True)
                raise
            dest.close()
            if problems:
                partial.unlink(missing_ok=True)
                raise BackupError(f"backup of {label} fails integrity_check: {'; '.join(problems[:5])}")
            if before == after:
                break
            log.info("replica %s changed while it was copied (attempt %d of %d); copying again", label, attempt,
                     ATTEMPTS)
        else:
            partial.unlink(missing_ok=True)
            raise BackupError(f"replica {label} kept changing while it was copied ({ATTEMPTS} attempts): stop "
                              "`pg2edge sync` for it (or run `pg2edge cutover promote`, which stops it first) "
                              "and back up again")
    finally:
        src.close()
    partial.rename(out)
    return position, rows


def _fingerprint(conn: object) -> tuple[object, ...]:
    """What pg2edge's writers change on a replica: commit position, state records, queue, write log."""
    from pg2edge.pipeline.cutover.changelog import CHANGELOG_TABLE
    from pg2edge.pipeline.sinks.retry import QUEUE_TABLE

    probes = [
        f"SELECT json_extract(value, '$.commit_lsn') FROM {quote_ident(state.STATE_TABLE)} "
        "WHERE scope = 'position' AND name = 'applied'",
        f"SELECT count(*), max(updated_at) FROM {quote_ident(state.STATE_TABLE)} WHERE scope <> 'position'",
        f"SELECT count(*), max(id), max(updated_at) FROM {quote_ident(QUEUE_TABLE)}",
        f"SELECT count(*), max(id), count(replayed_at) FROM {quote_ident(CHANGELOG_TABLE)}",
    ]
    out: list[object] = []
    for sql in probes:
        try:
            out.append(tuple(conn.execute(sql).fetchall()))  # type: ignore[attr-defined]
        except apsw.SQLError:  # that table does not exist (yet)
            out.append(None)
    return tuple(out)


def _copy_remote(src: object, dest: apsw.Connection, *, exact: bool) -> int:
    """Every table of ``src`` into the empty ``dest``: tables, rows, then indexes, views and triggers
    (so no trigger fires on the copied rows), then ``sqlite_sequence``. Returns the rows copied."""
    from pg2edge.pipeline.d1.client import exact_column, exact_value

    read = src.execute  # type: ignore[attr-defined]
    kinds = {r[1]: (r[2], bool(r[4])) for r in read("PRAGMA table_list") if r[0] == "main"}
    schema = [tuple(r) for r in read("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL "
                                     "ORDER BY rowid")]
    copied = 0
    dest.execute("PRAGMA foreign_keys = OFF")
    later: list[str] = []
    with dest:
        for kind, name, table, sql in schema:
            if table.startswith(_NOT_COPIED):
                continue
            if kind != "table":
                later.append(sql)
                continue
            ttype, without_rowid = kinds.get(name, ("table", False))
            if ttype != "shadow":  # a virtual table creates its shadow tables itself
                dest.execute(sql)
            if ttype == "virtual":
                continue  # its rows live in its shadow tables, copied as tables
            info = read(f"PRAGMA table_xinfo({quote_ident(name)})").fetchall()
            cols = [r[1] for r in info if r[6] == 0]  # not generated, not hidden
            key = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5] > 0] if without_rowid else ["rowid"]
            copied += _copy_rows(read, dest, name, cols, key, replace=ttype == "shadow",
                                 select=exact_column if exact else str, fix=exact_value if exact else None)
        for sql in later:
            dest.execute(sql)
        try:
            sequences = read("SELECT name, seq FROM sqlite_sequence").fetchall()
        except apsw.SQLError:
            sequences = []
        if sequences:
            dest.execute("DELETE FROM sqlite_sequence")
            dest.executemany("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", sequences)
    return copied


def _copy_rows(read: object, dest: apsw.Connection, table: str, cols: list[str], key: list[str], *, replace: bool,
               select: object, fix: object) -> int:
    """Copy ``table`` page by page in ``key`` order (keyset paging: each page starts after the last key)."""
    q = quote_ident(table)
    keys = ["rowid"] if key == ["rowid"] else [quote_ident(k) for k in key]
    key_cols = [k for k in key if k != "rowid"]
    exprs = [*(["rowid"] if key == ["rowid"] else []), *(select(quote_ident(c)) for c in cols)]  # type: ignore[operator]
    names = [*(["rowid"] if key == ["rowid"] else []), *(quote_ident(c) for c in cols)]
    insert = (f"INSERT {'OR REPLACE ' if replace else ''}INTO {q} ({', '.join(names)}) "
              f"VALUES ({', '.join('?' * len(names))})")
    order = ", ".join(keys)
    last: list[object] | None = None
    total = 0
    while True:
        where = f"WHERE ({order}) > ({', '.join('?' * len(keys))}) " if last is not None else ""
        rows = read(f"SELECT {', '.join(exprs)} FROM {q} {where}ORDER BY {order} LIMIT {PAGE_ROWS}",  # type: ignore[operator]
                    last or []).fetchall()
        if not rows:
            return total
        if fix is not None:
            rows = [tuple(fix(v) for v in row) for row in rows]  # type: ignore[operator]
        dest.executemany(insert, rows)
        total += len(rows)
        first = 1 if key == ["rowid"] else 0
        last_row = rows[-1]
        last = [last_row[0]] if key == ["rowid"] else [last_row[first + cols.index(k)] for k in key_cols]
        if len(rows) < PAGE_ROWS:
            return total
