"""Tenant id -> tenant file path, so a hostile id can never leave the tenant folder.

Rules (``tenant_path``), total for every accepted id:

* empty, NUL-containing or over-long ids (more than ``MAX_ID_BYTES`` UTF-8 bytes)
  are refused with :class:`TenantIdError` naming the table, key and id;
* every character outside ``[A-Za-z0-9_.-]`` is percent-encoded (UTF-8 bytes,
  ``%2F`` for ``/``), and so is a leading ``.`` (no ``.``/``..``/hidden files)
  and a leading ``_`` (names starting with ``_`` are reserved for pg2edge's own
  files such as ``_shared.db``, so no tenant can collide with them);
* when the file name would pass ``MAX_NAME_BYTES`` (255, the limit of ext4,
  xfs, btrfs, tmpfs, APFS: 100 × ``é`` encodes to 600 bytes), the name holds
  the first ``HASH_KEEP_BYTES`` of the encoded id, ``~`` and the SHA-256 of
  the id (64 hex digits). ``~`` is always percent-encoded in an id, so a hashed
  name never equals an encoded one; the tenant file records its real id
  (``_pg2edge_state`` tenant/id), which ``tenant list`` shows;
* the resolved path is verified to lie inside the pattern's folder.

The plain encoding is reversible (:func:`decode_tenant_id`), so ``tenant list``
shows the real ids.

A tenant **database** named by a URL (``libsql://{tenant}-myorg.turso.io``,
``http://{tenant}.localhost:8080``) needs a DNS label instead
(:func:`tenant_label`, the same id checks first):

* an id that already is a label — only ``[a-z0-9-]``, no ``-`` at either end,
  short enough for the room the pattern leaves in its 63-byte host label, and
  not ending like a hashed label (``-x`` and 8 hex digits) — is used as it is;
* any other id is lowercased, each run of characters outside ``[a-z0-9]``
  becomes one ``-``, the result is cut to fit, and ``-x`` plus the first 8 hex
  digits of the id's SHA-256 are appended (``Acme Corp`` -> ``acme-corp-x3f1c...``;
  ``t`` stands in when nothing is left);
* the mapping (label -> original id) is recorded with the database, so
  ``tenant list`` shows the original ids; two ids that map to the same label
  (a hash collision of two ids with the same sanitized form) are refused,
  naming both — never merged.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import unquote

from pg2edge.pipeline.tenants.errors import TenantIdError, TenantPatternError

PLACEHOLDER = "{tenant}"
MAX_ID_BYTES = 200  # longest accepted tenant id (UTF-8 bytes)
MAX_NAME_BYTES = 255  # file name limit of the usual file systems
HASH_MARK = "~"  # never in an encoded id (it is percent-encoded), so hashed names cannot collide
HASH_KEEP_BYTES = 100  # of the encoded id kept in front of a hashed name, for a readable listing
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


LABEL_MAX = 63  # bytes of one DNS label
LABEL_HASH_HEX = 8
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")
_HASHED_SUFFIX = re.compile(r"-x[0-9a-f]{%d}\Z" % LABEL_HASH_HEX)


def tenant_label(tenant: str, *, room: int = LABEL_MAX, table: str = "?", key: object = None) -> str:
    """The DNS label of ``tenant`` (see the module docstring); ``room``: the bytes the pattern leaves."""
    encode_tenant_id(tenant, table=table, key=key)  # the same refusals as file names (empty, NUL, too long)
    if _LABEL.match(tenant) and len(tenant) <= room and not _HASHED_SUFFIX.search(tenant):
        return tenant
    suffix = "-x" + hashlib.sha256(tenant.encode("utf-8")).hexdigest()[:LABEL_HASH_HEX]
    keep = re.sub(r"[^a-z0-9]+", "-", tenant.lower()).strip("-")[:max(0, room - len(suffix))].rstrip("-")
    label = (keep or "t") + suffix
    if len(label) > room:
        raise TenantPatternError(f"the tenant URL pattern leaves {room} bytes of its host label for the tenant; "
                                 f"a hashed tenant label needs {len(label)}")
    return label


def decode_tenant_id(encoded: str) -> str:
    return unquote(encoded, errors="strict")


def is_url_pattern(pattern: str) -> bool:
    """A pattern naming one remote database per tenant (``libsql://{tenant}-org.turso.io``), not files."""
    return "://" in pattern


def check_pattern(pattern: str) -> None:
    if is_url_pattern(pattern):
        from pg2edge.pipeline.tenants.remote import parse_url_pattern

        parse_url_pattern(pattern)
        return
    if pattern.count(PLACEHOLDER) != 1:
        raise TenantPatternError(f"tenant pattern {pattern!r} must contain {PLACEHOLDER} exactly once")
    if PLACEHOLDER in os.path.dirname(pattern.replace(os.sep, "/")):
        raise TenantPatternError(f"tenant pattern {pattern!r}: {PLACEHOLDER} must be in the file name, not a folder")


def tenant_folder(pattern: str) -> Path:
    check_pattern(pattern)
    return Path(os.path.dirname(pattern) or ".").resolve()


def hashed_tenant_id(tenant: str, encoded: str) -> str:
    """A bounded name part: the start of ``encoded`` (never cut inside a %XX), ``~`` and the id's SHA-256."""
    keep = encoded[:HASH_KEEP_BYTES]
    cut = keep.rfind("%", max(0, len(keep) - 2))
    if cut >= 0 and len(keep) - cut < 3:
        keep = keep[:cut]
    return keep + HASH_MARK + hashlib.sha256(tenant.encode("utf-8")).hexdigest()


def tenant_file_name(pattern: str, tenant: str, *, table: str = "?", key: object = None) -> str:
    """The file name of ``tenant`` under ``pattern``: encoded, or hashed when that passes MAX_NAME_BYTES."""
    check_pattern(pattern)
    before, after = os.path.basename(pattern).split(PLACEHOLDER)
    encoded = encode_tenant_id(tenant, table=table, key=key)
    name = before + encoded + after
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    name = before + hashed_tenant_id(tenant, encoded) + after
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise TenantPatternError(f"tenant pattern {pattern!r}: the text around {PLACEHOLDER} leaves no room for a "
                                 f"tenant id within {MAX_NAME_BYTES} bytes")
    return name


def tenant_path(pattern: str, tenant: str, *, table: str = "?", key: object = None) -> Path:
    """The file of ``tenant`` under ``pattern`` (e.g. ``data/tenants/{tenant}.db``), verified inside its folder."""
    folder = tenant_folder(pattern)
    name = tenant_file_name(pattern, tenant, table=table, key=key)
    path = (folder / name).resolve()
    if path.parent != folder:
        raise TenantIdError(f"tenant id {tenant!r} ({table}, key {key!r}) resolves to {path}, outside {folder}")
    return path


def file_regex(pattern: str) -> re.Pattern[str]:
    """Matches a tenant file name of ``pattern``; group 1 is the encoded id, group 2 the hash of a hashed name."""
    check_pattern(pattern)
    before, after = os.path.basename(pattern).split(PLACEHOLDER)
    return re.compile(re.escape(before) + r"([A-Za-z0-9%\-][A-Za-z0-9_.%\-]*)(?:~([0-9a-f]{64}))?"
                      + re.escape(after) + r"\Z")
