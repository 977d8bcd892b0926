"""Turso export: a clean SQLite file (``turso db create --from-file``) without pg2edge's internal tables."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import apsw

from pg2edge.pipeline.exports.errors import ExportError
from pg2edge.pipeline.exports.result import ExportResult
from pg2edge.pipeline.exports.schema import check_output, open_readonly, read_schema
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)


def export_turso(target: str | Path, output: str | Path, *, overwrite: bool = False) -> ExportResult:
    """Write ``output``: a vacuumed copy of ``target`` without ``_pg2edge_*`` tables, journal_mode DELETE.

    The replica is read through one read transaction (``VACUUM INTO``), so a
    sync daemon may keep writing meanwhile; the copy is consistent.
    """
    target, output = Path(target), Path(output)
    check_output(target, output, overwrite)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    src = open_readonly(target)
    try:
        src.execute("VACUUM main INTO ?", (str(tmp),))
    except apsw.Error as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot copy {target} to {tmp}: {exc}") from exc
    finally:
        src.close()
    try:
        result = _clean(tmp, output)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("turso export of %s written to %s", target, output)
    return result


def _clean(path: Path, output: Path) -> ExportResult:
    """Drop the internal tables in the copy, switch it to rollback-journal mode, vacuum it again."""
    db = apsw.Connection(str(path))
    try:
        schema = read_schema(db)
        with db:
            for name in schema.excluded:
                db.execute(f"DROP TABLE {quote_ident(name)}")
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("VACUUM")
        rows = 0
        for t in schema.tables:
            counted = db.execute(f"SELECT count(*) FROM {quote_ident(t.name)}").fetchone()
            assert counted is not None  # count(*) always returns one row
            rows += counted[0]
        problems = [r[0] for r in db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        if problems:
            raise ExportError(f"the exported copy fails integrity_check: {'; '.join(problems[:5])}")
    finally:
        db.close()
    return ExportResult(output=output, format="turso", tables=[t.name for t in schema.tables],
                        rows=rows, excluded=schema.excluded)
