"""The replica file as a target: what a target string names, and whether it can be used.

Every command that opens a replica goes through here (``applier.open_replica``,
``status``, ``validate``, the snapshot's preflight), so a bad target gets one
error that names it, whatever the command:

* a URL (``scheme://...``) is refused by name until a sink for its scheme exists
  (the name shown is ``scheme://host[:port]``: no user, token or query);
* a missing folder, a file where a folder is expected, a read-only folder or
  file system, or too little free space, each named with the path;
* a file that is not SQLite, is truncated or corrupt (its header and schema
  are read without writing anything);
* a SQLite file of another application (tables but no ``_pg2edge_state``).

:func:`sqlite_error` turns an apsw error met while using a replica into a
:class:`TargetError` naming the file (``database or disk is full``, not the
secondary error a failed rollback leaves behind).
"""

from __future__ import annotations

import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import apsw

from pg2edge.errors import TargetError

SQLITE_MAGIC = b"SQLite format 3\x00"
STATE_TABLE = "_pg2edge_state"
# A target with less free space than this is refused before anything changes on the source.
MIN_FREE_BYTES = 1024 * 1024
# The remote targets (pipeline.remote.url): libSQL/Turso and the D1 Worker; commands that take them
# dispatch before a file is opened, so here a URL is refused by name.
REMOTE_SCHEMES = ("libsql", "https", "http", "d1+https", "d1+http")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


class TargetFileError(TargetError):
    """The target cannot be used as a replica file (the message names the path or URL and why)."""


def url_scheme(target: str | Path) -> str | None:
    """The scheme of a target written as a URL (``http`` for ``http://...``), else None (a file path)."""
    m = _URL.match(str(target))
    return m.group(1).lower() if m else None


def shown_url(target: str) -> str:
    """``scheme://host[:port]`` of a URL target: never its user, password, token or query."""
    scheme = url_scheme(target) or ""
    try:
        parts = urlsplit(target)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        host, port = "", ""
    return f"{scheme}://{host}{port}" if host else f"{scheme}://..."


def check_target_name(target: str | Path) -> Path:
    """The file path of ``target``; a URL target is refused by name (no sink handles URLs here yet)."""
    scheme = url_scheme(target)
    if scheme is None:
        if str(target) == "":
            raise TargetFileError("empty target: pass --target FILE.db")
        return Path(target)
    shown = shown_url(str(target))
    if scheme in REMOTE_SCHEMES:
        raise TargetFileError(f"target {shown} is a remote target; this command works on a SQLite replica file "
                              "(sync, snapshot, status, wait, validate, dlq, teardown and cutover "
                              "check/freeze/drain take a URL)")
    raise TargetFileError(f"target {shown}: unknown target scheme {scheme}:// (a target is a SQLite file "
                          f"path, or one of {', '.join(s + '://' for s in REMOTE_SCHEMES)})")


@dataclass(frozen=True)
class TargetInfo:
    """What is at a target path now: ``kind`` is "missing", "empty" (0 bytes) or "sqlite"."""

    path: Path
    kind: str
    tables: tuple[str, ...] = field(default=())

    @property
    def is_replica(self) -> bool:
        return STATE_TABLE in self.tables

    @property
    def user_tables(self) -> tuple[str, ...]:
        return tuple(t for t in self.tables if not t.startswith(("_pg2edge", "sqlite_")))


def sqlite_error(path: str | Path, exc: BaseException) -> TargetError:
    """A TargetError naming ``path`` for an apsw error (the root cause, not a failed rollback)."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:  # the real error may hide behind a failed rollback
        chain.append(link)
        link = link.__cause__ or link.__context__
    errors: list[BaseException] = [e for e in chain if isinstance(e, apsw.Error)] or [exc]
    root = (apsw.FullError, apsw.NotADBError, apsw.CorruptError, apsw.ReadOnlyError, apsw.CantOpenError,
            apsw.IOError)
    cause = next((e for e in errors if isinstance(e, root)), errors[0])
    if isinstance(cause, apsw.FullError):
        return TargetFileError(f"replica {path}: database or disk is full")
    if isinstance(cause, (apsw.NotADBError, apsw.CorruptError)):
        return TargetFileError(f"replica {path} is corrupt or not a SQLite database ({cause})")
    if isinstance(cause, apsw.ReadOnlyError):
        return TargetFileError(f"replica {path} is read-only ({cause})")
    if isinstance(cause, apsw.CantOpenError):
        folder = Path(path).absolute().parent
        if not folder.is_dir():
            return TargetFileError(f"cannot open replica {path}: directory {folder} does not exist")
        return TargetFileError(f"cannot open replica {path} ({cause})")
    if isinstance(cause, apsw.IOError):
        return TargetFileError(f"replica {path}: disk I/O error ({cause})")
    return TargetFileError(f"replica {path}: SQLite error {type(cause).__name__}: {cause}")


def _check_header_settled(path: Path, size: int) -> None:
    """:func:`_check_header`, read again for up to a second while the file has a WAL: a checkpoint in another
    connection (the daemon's sync thread) writes page 1, with the new page count, before the last page that
    extends the file, so a database in WAL mode can look truncated for the few milliseconds that takes."""
    wal = Path(f"{path}-wal")
    for attempt in range(20):
        try:
            _check_header(path, size)
            return
        except TargetFileError:
            if attempt == 19 or not (wal.exists() and wal.stat().st_size > 0):
                raise
        time.sleep(0.05)
        size = path.stat().st_size


def _check_header(path: Path, size: int) -> None:
    with open(path, "rb") as fh:
        head = fh.read(100)
    if not head.startswith(SQLITE_MAGIC) or len(head) < 100:
        raise TargetFileError(f"replica {path} is not a SQLite database (its first bytes are not the SQLite "
                              "header): a corrupt file, or some other kind of file")
    (page_size,) = struct.unpack(">H", head[16:18])
    page_size = 65536 if page_size == 1 else page_size
    change, pages, valid_for = struct.unpack(">I", head[24:28])[0], struct.unpack(">I", head[28:32])[0], \
        struct.unpack(">I", head[92:96])[0]
    if pages and change == valid_for and size < pages * page_size:
        raise TargetFileError(f"replica {path} is corrupt: truncated to {size} bytes, its header says "
                              f"{pages} pages of {page_size} bytes")


def inspect_target(target: str | Path) -> TargetInfo:
    """Read (never write) what is at ``target``; TargetError if it is not a usable SQLite file."""
    path = check_target_name(target)
    try:
        st = path.stat()
    except FileNotFoundError:
        return TargetInfo(path=path, kind="missing")
    except NotADirectoryError:
        raise TargetFileError(f"target {path}: {_first_non_dir(path)} is a file, not a directory") from None
    except OSError as exc:
        raise TargetFileError(f"target {path}: {exc.strerror}") from None
    if path.is_dir():
        raise TargetFileError(f"target {path} is a directory, not a SQLite file")
    if st.st_size == 0:
        return TargetInfo(path=path, kind="empty")
    try:
        _check_header_settled(path, st.st_size)
    except PermissionError:
        raise TargetFileError(f"replica {path} cannot be read (permission denied)") from None
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as exc:
        raise sqlite_error(path, exc) from None
    try:
        conn.setbusytimeout(5000)
        names = tuple(r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'"))
    except apsw.Error as exc:
        raise sqlite_error(path, exc) from None
    finally:
        conn.close()
    return TargetInfo(path=path, kind="sqlite", tables=names)


def _first_non_dir(path: Path) -> Path:
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return path.parent


def check_writable(target: str | Path, *, create_dirs: bool = False,
                   min_free_bytes: int = MIN_FREE_BYTES) -> Path:
    """The target's folder exists (or, with ``create_dirs``, can be made), is writable and has space.

    Checks only: nothing is created. Root passes permission checks, but not a read-only file system
    (``access()`` reports EROFS), which is what a read-only mount gives.
    """
    path = check_target_name(target)
    folder = path.absolute().parent
    probe = folder
    if not folder.exists():
        first = _first_non_dir(path.absolute())
        if first.exists() and not first.is_dir():
            raise TargetFileError(f"target {path}: {first} is a file, not a directory")
        if not create_dirs:
            raise TargetFileError(f"target {path}: directory {folder} does not exist")
        while not probe.exists():
            probe = probe.parent
    if not probe.is_dir():
        raise TargetFileError(f"target {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise TargetFileError(f"target {path}: directory {probe} is not writable (read-only file system "
                              "or no permission)")
    if path.exists() and not os.access(path, os.W_OK):
        raise TargetFileError(f"target {path} is not writable (read-only file system or no permission)")
    vfs = os.statvfs(probe)
    free = vfs.f_bavail * vfs.f_frsize
    if free < min_free_bytes:
        raise TargetFileError(f"target {path}: only {free} bytes free on the file system of {probe} "
                              f"(at least {min_free_bytes} needed)")
    return path


def check_replica_file(target: str | Path) -> TargetInfo:
    """What ``open_replica`` checks before it opens (and may create) a file: a path, not an unknown URL; a
    new or empty file or a readable pg2edge replica, never a corrupt file or another application's database."""
    info = inspect_target(target)
    if info.kind == "sqlite" and not info.is_replica and info.user_tables:
        shown = ", ".join(info.user_tables[:5]) + (", ..." if len(info.user_tables) > 5 else "")
        raise TargetFileError(f"{info.path} is a SQLite database of another application (tables: {shown}), "
                              "not a pg2edge replica: choose a new file")
    return info


def check_replica_target(target: str | Path, *, create_dirs: bool = False) -> TargetInfo:
    """Before a snapshot or sync: writable, and a new file or a pg2edge replica (never another app's DB)."""
    check_writable(target, create_dirs=create_dirs)
    return check_replica_file(target)


def check_existing_replica(target: str | Path) -> TargetInfo:
    """For status, validate, wait: the file exists and is a readable pg2edge replica (or one being
    created: empty, or no table yet); corrupt files and other applications' databases are refused."""
    info = inspect_target(target)
    if info.kind == "missing":
        raise TargetFileError(f"replica {info.path} does not exist")
    if info.kind == "sqlite" and not info.is_replica and info.user_tables:
        raise TargetFileError(f"{info.path} is not a pg2edge replica (no {STATE_TABLE} table; it holds "
                              f"{', '.join(info.user_tables[:5])})")
    return info
