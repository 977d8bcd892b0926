"""Tenant id -> tenant file path, so a hostile id can never leave the tenant folder.

Rules (``tenant_path``):

* empty, NUL-containing or over-long ids (more than ``MAX_ID_BYTES`` UTF-8 bytes)
  are refused with :class:`TenantIdError` naming the table, key and id;
* every character outside ``[A-Za-z0-9_.-]`` is percent-encoded (UTF-8 bytes,
  ``%2F`` for ``/``), and so is a leading ``.`` (no ``.``/``..``/hidden files)
  and a leading ``_`` (names starting with ``_`` are reserved for pg2edge's own
  files such as ``_shared.db``, so no tenant can collide with them);
* the resolved path is verified to lie inside the pattern's folder.

The encoding is reversible (:func:`decode_tenant_id`), so ``tenant list`` shows
the real ids.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

from pg2edge.pipeline.tenants.errors import TenantIdError, TenantPatternError

PLACEHOLDER = "{tenant}"
MAX_ID_BYTES = 200  # an encoded id (up to 3x) stays below the usual 255-byte file name limit
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def _pct(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8"))


def encode_tenant_id(tenant: str, *, table: str = "?", key: object = None) -> str:
    """The file-name-safe form of ``tenant``; TenantIdError for empty, NUL or over-long ids."""
    where = f"table {table}, key {key!r}"
    if tenant is None or tenant == "":
        raise TenantIdError(f"empty tenant id ({where}): a row needs a tenant to be routed")
    if "\x00" in tenant:
        raise TenantIdError(f"tenant id {tenant!r} contains NUL ({where})")
    if len(tenant.encode("utf-8")) > MAX_ID_BYTES:
        raise TenantIdError(f"tenant id {tenant[:40]!r}... is longer than {MAX_ID_BYTES} bytes ({where})")
    out = []
    for i, ch in enumerate(tenant):
        if ch in _SAFE and not (i == 0 and ch in "._"):
            out.append(ch)
        else:
            out.append(_pct(ch))
    return "".join(out)


def decode_tenant_id(encoded: str) -> str:
    return unquote(encoded, errors="strict")


def check_pattern(pattern: str) -> None:
    if pattern.count(PLACEHOLDER) != 1:
        raise TenantPatternError(f"tenant pattern {pattern!r} must contain {PLACEHOLDER} exactly once")
    if PLACEHOLDER in os.path.dirname(pattern.replace(os.sep, "/")):
        raise TenantPatternError(f"tenant pattern {pattern!r}: {PLACEHOLDER} must be in the file name, not a folder")


def tenant_folder(pattern: str) -> Path:
    check_pattern(pattern)
    return Path(os.path.dirname(pattern) or ".").resolve()


def tenant_path(pattern: str, tenant: str, *, table: str = "?", key: object = None) -> Path:
    """The file of ``tenant`` under ``pattern`` (e.g. ``data/tenants/{tenant}.db``), verified inside its folder."""
    folder = tenant_folder(pattern)
    name = os.path.basename(pattern).replace(PLACEHOLDER, encode_tenant_id(tenant, table=table, key=key))
    path = (folder / name).resolve()
    if path.parent != folder:
        raise TenantIdError(f"tenant id {tenant!r} ({table}, key {key!r}) resolves to {path}, outside {folder}")
    return path


def file_regex(pattern: str) -> re.Pattern[str]:
    """Matches a tenant file name of ``pattern``; group 1 is the encoded id."""
    check_pattern(pattern)
    before, after = os.path.basename(pattern).split(PLACEHOLDER)
    return re.compile(re.escape(before) + r"([A-Za-z0-9%\-][A-Za-z0-9_.%\-]*)" + re.escape(after) + r"\Z")
