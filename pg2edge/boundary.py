"""The CLI's error boundary: any failure becomes one line naming the object, and exit 2.

Library code raises :class:`pg2edge.errors.Pg2EdgeError` subclasses whose
messages name the object (file, host/port/database, table.column). An error
that escaped that (an apsw, psycopg or OS error) is still turned into one line
here, naming the command's target or source, so an operator never gets a
traceback; ``-v`` logs the traceback as well.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def one_line(text: str) -> str:
    """Collapse a multi-line message (psycopg's DETAIL/HINT lines, say) into one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _targets(args: argparse.Namespace) -> str | None:
    target: Any = getattr(args, "target", None)
    if isinstance(target, list):
        target = ", ".join(map(str, target)) if target else None
    pattern = getattr(args, "tenant_pattern", None) or getattr(args, "pattern", None)
    return str(target) if target else (f"tenant files {pattern}" if pattern else None)


def describe_error(exc: BaseException, args: argparse.Namespace) -> str:
    """One line for an exception that is not a Pg2EdgeError."""
    apsw = sys.modules.get("apsw")
    if apsw is not None and isinstance(exc, apsw.Error):
        from pg2edge.pipeline.targetfile import sqlite_error

        return str(sqlite_error(_targets(args) or "(the replica)", exc))
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        from pg2edge.dsn import describe, scrub

        source = getattr(args, "source", None) or ""
        where = f" at {describe(source)}" if source else ""
        state = getattr(getattr(exc, "diag", None), "sqlstate", None)
        code = f" ({state})" if state else ""
        text = scrub(str(exc), source) if source else str(exc)
        return f"PostgreSQL{where}{code}: {text}"
    if isinstance(exc, ValueError):  # a value given on the command line (a duration, say): the text names it
        return str(exc)
    if isinstance(exc, OSError):
        what = exc.filename if exc.filename is not None else "(operating system)"
        return f"{what}: {exc.strerror or exc}"
    return f"internal error {type(exc).__name__}: {exc} (run with -v for the traceback)"
