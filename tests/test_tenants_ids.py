"""Tenant ids cannot escape the tenant folder; the LRU bounds open files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pg2edge.config import load_config
from pg2edge.pipeline.tenants.errors import TenantIdError, TenantPatternError
from pg2edge.pipeline.tenants.ids import decode_tenant_id, encode_tenant_id, file_regex, tenant_path
from pg2edge.pipeline.tenants.pool import TenantPool

HOSTILE = ["../../etc/passwd", "..", ".", "a/b", "a\\b", "/abs", ".hidden", "_shared", "ü ß", "x?*:|<>\"",
           "-rf", "con", "tenant\n1"]


@pytest.mark.parametrize("tenant", HOSTILE)
def test_hostile_ids_stay_inside_the_folder_and_round_trip(tmp_path: Path, tenant: str) -> None:
    pattern = str(tmp_path / "tenants" / "{tenant}.db")
    path = tenant_path(pattern, tenant)
    assert path.parent == (tmp_path / "tenants").resolve()
    encoded = encode_tenant_id(tenant)
    assert "/" not in encoded and "\\" not in encoded and not encoded.startswith((".", "_"))
    assert decode_tenant_id(encoded) == tenant
    assert file_regex(pattern).match(path.name).group(1) == encoded


def test_encoding_examples(tmp_path: Path) -> None:
    assert encode_tenant_id("acme-01_x.y") == "acme-01_x.y"
    assert encode_tenant_id("../../etc/passwd") == "%2E.%2F..%2Fetc%2Fpasswd"
    assert encode_tenant_id("_shared") == "%5Fshared"
    assert encode_tenant_id("é") == "%C3%A9"


@pytest.mark.parametrize("tenant,why", [("", "empty"), ("a\x00b", "NUL"), ("x" * 201, "longer than")])
def test_unusable_ids_are_refused_by_name(tenant: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(TenantIdError, match=why) as info:
        tenant_path(str(tmp_path / "{tenant}.db"), tenant, table="public.notes", key={"id": "7"})
    assert "public.notes" in str(info.value) and "'7'" in str(info.value)


def test_pattern_needs_one_placeholder_in_the_file_name(tmp_path: Path) -> None:
    for bad in ("data/x.db", "data/{tenant}/{tenant}.db", "data/{tenant}/x.db"):
        with pytest.raises(TenantPatternError):
            tenant_path(bad, "a")


def test_lru_never_holds_more_than_max_open() -> None:
    opened: list[str] = []
    closed: list[str] = []
    pool: TenantPool[str] = TenantPool(max_open=5, opener=lambda t: opened.append(t) or t, closer=closed.append)
    for _round in range(3):
        for i in range(50):
            assert pool.get(f"t{i}") == f"t{i}"
            assert len(pool) <= 5
    assert pool.peak == 5 and len(opened) == 150 and len(closed) == 145
    pool.get("t49")  # most recent: no reopen
    assert len(opened) == 150
    pool.close()
    assert len(closed) == 150 and len(pool) == 0


def test_tenants_config_section(tmp_path: Path) -> None:
    cfg = tmp_path / "pg2edge.toml"
    cfg.write_text('[tenants]\ncolumn = "org"\npattern = "t/{tenant}.db"\nshared = "file"\nmax_open = 5\n')
    c = load_config(cfg, env={})
    assert (c.tenants.column, c.tenants.shared, c.tenants.max_open) == ("org", "file", 5)
    cfg.write_text('[tenants]\ncolumns = "org"\n')
    with pytest.raises(Exception, match="tenants.columns"):
        load_config(cfg, env={})


# -- tenant databases named by URL: ids become DNS labels (issue 18) ------------------------------
LABEL_CASES = [("acme", "acme"), ("t-42", "t-42"), ("acme--b", "acme--b")]


@pytest.mark.parametrize(("tenant", "label"), LABEL_CASES)
def test_ids_that_are_labels_stay_as_they_are(tenant: str, label: str) -> None:
    from pg2edge.pipeline.tenants.ids import tenant_label

    assert tenant_label(tenant) == label


@pytest.mark.parametrize("tenant", ["Acme", "Brand New/Co", "é", "-x", "a_b", "x" * 70, "t-x0123abcd", "../etc",
                                    "ü ß", "tenant\n1"])
def test_other_ids_are_sanitized_and_hash_suffixed(tenant: str) -> None:
    import hashlib
    import re

    from pg2edge.pipeline.tenants.ids import tenant_label

    label = tenant_label(tenant)
    assert re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", label) and len(label) <= 63
    assert label.endswith("-x" + hashlib.sha256(tenant.encode()).hexdigest()[:8])
    assert len(tenant_label(tenant, room=20)) <= 20


def test_labels_never_merge_ids_silently() -> None:
    from pg2edge.pipeline.tenants.ids import tenant_label
    from pg2edge.pipeline.tenants.remote import check_collisions, parse_url_pattern

    pattern = parse_url_pattern("libsql://{tenant}-myorg.turso.io")
    many = [f"Tenant {i}" for i in range(2000)] + [f"t{i}" for i in range(2000)] + ["ACME", "acme", "Acme!"]
    labels = check_collisions(pattern, many)
    assert len(set(labels.values())) == len(many)
    a, b = "a*+ #b", "a+@+^b"  # the same sanitized form and the same 8-digit hash (found by search)
    assert tenant_label(a) == tenant_label(b)
    with pytest.raises(TenantIdError, match=r"'a\*\+ #b' and 'a\+@\+\^b' both map to database label 'a-b-x"):
        check_collisions(pattern, [a, b])
    with pytest.raises(TenantIdError, match="both map"):  # also against ids recorded earlier
        check_collisions(pattern, [b], {tenant_label(a): {"tenant": a, "status": "created", "url": "?"}})


@pytest.mark.parametrize(("pattern", "fragment"), [
    ("libsql://myorg.turso.io/{tenant}", "first label of the host"),
    ("libsql://{tenant}{tenant}.turso.io", "exactly once"),
    ("http://{tenant}:8080", "first label of the host"),
    ("d1+https://{tenant}.workers.dev", "not D1"),
    ("ftp://{tenant}.example.com", "unknown target scheme"),
    ("libsql://{tenant}-" + "o" * 55 + ".turso.io", "at least 12"),
])
def test_bad_url_patterns_are_named(pattern: str, fragment: str) -> None:
    from pg2edge.pipeline.tenants.ids import check_pattern

    with pytest.raises(TenantPatternError, match=fragment):
        check_pattern(pattern)


def test_url_pattern_names_and_config_defaults() -> None:
    from pg2edge.config import TenantsConfig
    from pg2edge.pipeline.tenants.remote import parse_url_pattern

    p = parse_url_pattern("libsql://{tenant}-myorg.turso.io")
    assert p.url("acme") == "libsql://acme-myorg.turso.io" and p.host_label("acme") == "acme-myorg"
    assert p.room == 63 - len("-myorg")
    cfg = TenantsConfig(pattern="http://{tenant}.localhost:8080")
    assert cfg.shared_path == "data/tenants/_shared.db"  # not beside the URL
