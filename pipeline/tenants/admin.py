"""List and delete tenant files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pg2edge.pipeline.tenants.errors import TenantIdError
from pg2edge.pipeline.tenants.ids import decode_tenant_id, file_regex, tenant_folder, tenant_path


@dataclass(frozen=True, slots=True)
class TenantFile:
    tenant: str
    path: Path
    bytes: int


def list_tenants(pattern: str) -> dict[str, TenantFile]:
    """Tenant id -> its file, for every file of ``pattern`` in the tenant folder (sorted by id)."""
    folder = tenant_folder(pattern)
    if not folder.is_dir():
        return {}
    rx = file_regex(pattern)
    out = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        m = rx.match(entry.name)
        if m and entry.is_file():
            tenant = recorded_tenant_id(entry.path) if m.group(2) else decode_tenant_id(m.group(1))
            if tenant is None:
                continue  # a hashed name whose file does not (yet) record its id: not a complete tenant file
            out[tenant] = TenantFile(tenant=tenant, path=Path(entry.path), bytes=entry.stat().st_size)
    return out


def recorded_tenant_id(path: str | Path) -> str | None:
    """The tenant id a tenant file records (its name may be hashed), or None if it records none."""
    import apsw

    from pg2edge.pipeline import state

    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error:
        return None
    try:
        record = state.read_record(conn, "tenant", "id")
    except apsw.Error:
        return None
    finally:
        conn.close()
    tenant = record.get("tenant") if isinstance(record, dict) else None
    return str(tenant) if tenant is not None else None


def delete_tenant(pattern: str, tenant: str) -> list[Path]:
    """Remove ``tenant``'s file (and its -wal/-shm); returns what was removed. Stop the sync first."""
    path = tenant_path(pattern, tenant)
    if not path.exists():
        raise TenantIdError(f"no file for tenant {tenant!r} ({path})")
    removed = []
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if p.exists():
            p.unlink()
            removed.append(p)
    return removed
