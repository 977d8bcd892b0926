"""Source connection strings: connect with clear errors, never leak a password."""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import conninfo

from pg2edge.errors import PrivilegeError, SourceError

_SECRET_KEYS = ("password", "sslpassword")
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@")


def redact(dsn: str) -> str:
    """Return the DSN with any password replaced by '***' (URL or key=value form)."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return _URL_PASSWORD.sub(r"\1:***@", dsn)
    for key in _SECRET_KEYS:
        if key in params:
            params[key] = "***"
    return conninfo.make_conninfo("", **params)


def describe(dsn: str) -> str:
    """A short 'host H port P database D user U' label for messages; no secrets."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "an unparsable DSN"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    database = params.get("dbname") or params.get("user") or "(default)"
    user = params.get("user") or "(default)"
    return f"host {host} port {port} database {database} user {user}"


def scrub(text: str, dsn: str) -> str:
    """Remove the DSN's password from an error text that may echo it."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return _URL_PASSWORD.sub(r"\1:***@", text)
    for key in _SECRET_KEYS:
        secret = params.get(key)
        if secret:
            text = text.replace(str(secret), "***")
    return _URL_PASSWORD.sub(r"\1:***@", text)


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a psycopg connection; failures name host, port and database, never the password."""
    kwargs.setdefault("connect_timeout", 10)
    kwargs.setdefault("application_name", "pg2edge")
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PrivilegeError(
            f"PostgreSQL at {describe(dsn)} refused the connection: {scrub(str(exc).strip(), dsn)}"
        ) from None
    except psycopg.OperationalError as exc:
        raise SourceError(
            f"cannot connect to PostgreSQL at {describe(dsn)}: {scrub(str(exc).strip(), dsn)}"
        ) from None
    except psycopg.ProgrammingError as exc:
        raise SourceError(f"invalid source DSN ({redact(dsn)}): {scrub(str(exc), dsn)}") from None


_SESSION: contextvars.ContextVar[dict[str, psycopg.Connection[Any]] | None] = contextvars.ContextVar(
    "pg2edge_control_session", default=None)


@contextlib.contextmanager
def control_session() -> Iterator[None]:
    """One control connection per source for the whole run (catalog reads, slot status, heartbeats).

    Inside it, :func:`control` hands out the same autocommit connection each time (reopened if it broke);
    outside, every :func:`control` opens and closes its own. Nested sessions share the outer one."""
    if _SESSION.get() is not None:
        yield
        return
    token = _SESSION.set({})
    try:
        yield
    finally:
        for conn in (_SESSION.get() or {}).values():
            conn.close()
        _SESSION.reset(token)


@contextlib.contextmanager
def control(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection for control-plane statements: the run's shared one inside
    :func:`control_session`, else a new one closed on exit."""
    sessions = _SESSION.get()
    if sessions is None:
        with connect(dsn, autocommit=True) as own:
            yield own
        return
    shared = sessions.get(dsn)
    if shared is None or shared.closed or shared.broken:
        shared = sessions[dsn] = connect(dsn, autocommit=True)
    yield shared


def split_password(dsn: str) -> tuple[str, str | None]:
    """(the DSN without its password, the password or None): to store a DSN without its secret."""
    params = conninfo.conninfo_to_dict(dsn)
    password = params.pop("password", None)
    return conninfo.make_conninfo("", **params), (str(password) if password is not None else None)


def with_options(dsn: str, options: str) -> str:
    """The DSN with libpq ``options`` set to ``options`` (callers merge existing ones first)."""
    params = conninfo.conninfo_to_dict(dsn)
    params["options"] = options
    return conninfo.make_conninfo("", **params)


# The one text format the value codec reads (pg2edge.translators.codec): every connection whose
# values reach the codec gets these in its startup options, whatever the server's defaults are.
SESSION_SETTINGS: dict[str, str] = {
    "DateStyle": "ISO",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}


def session_options(existing: str = "") -> str:
    """A libpq ``options`` value: ``existing`` plus the codec's session settings (which win)."""
    ours = " ".join(f"-c {name}={value}" for name, value in SESSION_SETTINGS.items())
    return f"{existing} {ours}".strip()


def codec_dsn(dsn: str) -> str:
    """The DSN with the value codec's session settings added to any options it already has."""
    existing = str(conninfo.conninfo_to_dict(dsn).get("options") or "")
    return with_options(dsn, session_options(existing))


def database_name(conn: psycopg.Connection[Any]) -> str:
    """The name of the database a connection is attached to."""
    return conn.info.dbname
