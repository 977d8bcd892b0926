"""One libSQL database per tenant: URL patterns, provisioning, the tenant registry, seeding.

A ``[tenants] pattern`` with ``://`` names one remote libSQL database per
tenant, ``{tenant}`` in the first label of the host:
``libsql://{tenant}-myorg.turso.io`` (Turso), ``http://{tenant}.localhost:8080``
(a local sqld with namespaces: sqld picks the namespace from the Host header's
first label; ``*.localhost`` is reached on 127.0.0.1, see
:mod:`pg2edge.pipeline.remote.url`). The tenant id becomes a DNS label by
:func:`pg2edge.pipeline.tenants.ids.tenant_label`.

* **Provisioning** (``[tenants] provision``) creates a tenant's database before
  its first row and drops it on ``tenant delete``: :class:`SqldAdmin` (sqld's
  admin API, ``--enable-namespaces --admin-listen-addr``; key from
  ``$LIBSQL_ADMIN_AUTH_KEY``), :class:`TursoApi` (Turso's Platform API; token
  from ``$TURSO_API_TOKEN`` only; not exercised by the tests: there is no Turso
  here), or none (the databases exist already).
* **The registry** lives in the hub file (``[tenants] shared_path``, which also
  holds the shared stream's position): ``_pg2edge_state`` scope ``tenant-db``,
  one record per label ``{"tenant": original id, "status": "created" |
  "deleted", "url": ...}``. ``tenant list`` reads it; a label already recorded
  for another id is refused naming both; a deleted tenant's later changes are
  named and not applied.
* **Seeding** a tenant database reuses the file split and the upload of a
  remote snapshot: the tenant's file is built from the hub in a staging folder
  (:func:`create_tenant_file`: rows, identity, stream and position in one SQLite
  transaction), then :func:`upload_replica` sends it (resumable, position last)
  and the registry records it; then the staging file is removed.
* **Pooling**: every tenant database's Hrana client shares one HTTP client whose
  connections are bounded by ``[tenants] max_connections`` (over all tenants;
  against one sqld they are reused across namespaces since the Host header is
  per request), and the negotiated protocol version of the first one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import apsw

from pg2edge.config import TenantsConfig
from pg2edge.errors import ConfigError, TargetError
from pg2edge.pipeline import state
from pg2edge.pipeline.remote.errors import RemoteAuthError, RemoteError, RemoteURLError
from pg2edge.pipeline.remote.hrana import HranaClient
from pg2edge.pipeline.remote.http import RemoteSession, shared_pool
from pg2edge.pipeline.remote.url import RemoteTarget, parse_target, resolve_token
from pg2edge.pipeline.tenants.errors import TenantIdError, TenantPatternError
from pg2edge.pipeline.tenants.ids import LABEL_MAX, PLACEHOLDER, is_url_pattern, tenant_label

log = logging.getLogger(__name__)

REGISTRY_SCOPE = "tenant-db"
ENV_ADMIN_KEY = "LIBSQL_ADMIN_AUTH_KEY"
ENV_TURSO_API_TOKEN = "TURSO_API_TOKEN"
TURSO_API = "https://api.turso.tech"


class ProvisionError(TargetError):
    """A tenant database could not be created or dropped (refused, unauthorized, quota, feature off)."""


class TenantDatabaseGone(TargetError):
    """A tenant database the registry holds no longer exists (dropped outside pg2edge)."""


@dataclass(frozen=True, slots=True)
class UrlPattern:
    """``scheme://BEFORE{tenant}AFTER.REST``: the tenant in the host's first label."""

    text: str
    head: str  # "scheme://" + text before {tenant}
    after: str  # rest of the first label after {tenant}
    rest: str  # ".domain[:port]" after the first label
    before: str  # text of the first label before {tenant}

    @property
    def room(self) -> int:
        return LABEL_MAX - len(self.before) - len(self.after)

    def label(self, tenant: str, *, table: str = "?", key: object = None) -> str:
        return tenant_label(tenant, room=self.room, table=table, key=key)

    def url(self, label: str) -> str:
        return f"{self.head}{label}{self.after}{self.rest}"

    def host_label(self, label: str) -> str:
        """The host's first label: sqld's namespace name."""
        return f"{self.before}{label}{self.after}"


def parse_url_pattern(pattern: str) -> UrlPattern:
    if pattern.count(PLACEHOLDER) != 1:
        raise TenantPatternError(f"tenant pattern {pattern!r} must contain {PLACEHOLDER} exactly once")
    scheme, _, rest = pattern.partition("://")
    host, slash, path = rest.partition("/")
    first, dot, domain = host.partition(".")
    if PLACEHOLDER not in first or not dot:
        raise TenantPatternError(f"tenant pattern {pattern!r}: {PLACEHOLDER} must be in the first label of the host "
                                 "(libsql://{tenant}-myorg.turso.io, http://{tenant}.localhost:8080)")
    if slash and path.strip("/"):
        raise TenantPatternError(f"tenant pattern {pattern!r}: a tenant database URL has no path")
    before, after = first.split(PLACEHOLDER)
    try:
        parse_target(pattern.replace(PLACEHOLDER, "t").rstrip("/"), token="")
    except RemoteURLError as exc:
        raise TenantPatternError(f"tenant pattern {pattern!r}: {exc}") from None
    if scheme.lower().startswith("d1"):
        raise TenantPatternError(f"tenant pattern {pattern!r}: one database per tenant is for libSQL targets "
                                 "(libsql://, https://, http://), not D1")
    p = UrlPattern(text=pattern, head=f"{scheme}://{before}", after=after, rest="." + domain, before=before)
    if p.room < 12:
        raise TenantPatternError(f"tenant pattern {pattern!r}: the host's first label leaves {p.room} characters "
                                 "for the tenant (at least 12 needed)")
    return p


# -- provisioners ---------------------------------------------------------------------------
class Provisioner(Protocol):
    name: str

    def check(self) -> None: ...
    def create(self, name: str) -> bool: ...
    def delete(self, name: str) -> bool: ...
    def exists(self, name: str) -> bool | None: ...
    def close(self) -> None: ...


class NoProvisioner:
    """``provision = "none"``: every tenant database exists already."""

    name = "none"

    def check(self) -> None:
        pass

    def create(self, name: str) -> bool:
        return False

    def delete(self, name: str) -> bool:
        raise ProvisionError(f"cannot drop tenant database {name!r}: [tenants] provision is \"none\" "
                             "(set provision to \"sqld-admin\" or \"turso-api\", or drop it with your provider)")

    def exists(self, name: str) -> bool | None:
        return None

    def close(self) -> None:
        pass


class SqldAdmin:
    """sqld's admin API: ``POST /v1/namespaces/NAME/create``, ``DELETE /v1/namespaces/NAME``."""

    name = "sqld-admin"

    def __init__(self, admin_url: str, pattern: UrlPattern) -> None:
        target = parse_target(admin_url, token="")
        self.label = target.label
        self.pattern = pattern
        self.session = RemoteSession(target)
        key = os.environ.get(ENV_ADMIN_KEY, "").strip()
        if key:
            self.session.set_auth(f"basic {key}")

    def _refused(self, what: str, exc: Exception) -> ProvisionError:
        if isinstance(exc, RemoteAuthError):
            return ProvisionError(f"sqld admin API {self.label} refused to {what} (HTTP 401/403): set "
                                  f"${ENV_ADMIN_KEY} to the key sqld was started with (--admin-auth-key)")
        return ProvisionError(f"sqld admin API {self.label} refused to {what}: {exc}")

    def check(self) -> None:
        probe = "pg2edge-probe-" + secrets.token_hex(4)
        try:
            resp = self.session.get(f"/v1/namespaces/{probe}/config", allow=frozenset({404}), retry=False)
        except RemoteError as exc:
            raise self._refused("answer", exc) from None
        if resp.status != 404:
            raise ProvisionError(f"sqld admin API {self.label} answered HTTP {resp.status} for a namespace that "
                                 "does not exist (is it sqld's --admin-listen-addr?)")
        # with namespaces off, sqld serves every Host from its one database: tenants would share it
        data = parse_target(self.pattern.url(probe), token="")
        sess = RemoteSession(data)
        try:
            resp = sess.post_json("/v2/pipeline", {"baton": None, "requests": []}, allow=frozenset({404}),
                                  retry=False)
        except RemoteError as exc:
            raise ProvisionError(f"tenant database server {data.label}: {exc}") from None
        finally:
            sess.close()
        if resp.status != 404:
            raise ProvisionError(f"sqld behind {self.pattern.text} answers for a namespace that does not exist: it "
                                 "runs without namespaces (start it with --enable-namespaces "
                                 "--admin-listen-addr), so every tenant would share one database")

    def create(self, name: str) -> bool:
        try:
            resp = self.session.post_json(f"/v1/namespaces/{quote(name)}/create", {}, allow=frozenset({400}))
        except RemoteError as exc:
            raise self._refused(f"create namespace {name!r}", exc) from None
        if resp.status == 400:
            if b"already exists" in resp.body:
                return False
            raise ProvisionError(f"sqld admin API {self.label} refused to create namespace {name!r}: "
                                 f"{resp.body[:160].decode('utf-8', 'replace')}")
        return True

    def delete(self, name: str) -> bool:
        try:
            resp = self.session.delete(f"/v1/namespaces/{quote(name)}", allow=frozenset({404}))
        except RemoteError as exc:
            raise self._refused(f"delete namespace {name!r}", exc) from None
        return resp.status != 404

    def exists(self, name: str) -> bool | None:
        try:
            resp = self.session.get(f"/v1/namespaces/{quote(name)}/config", allow=frozenset({404}), retry=False)
        except RemoteError:
            return None
        return resp.status != 404

    def close(self) -> None:
        self.session.close()


class TursoApi:
    """Turso's Platform API (not exercised by the tests: no Turso here).

    ``POST /v1/organizations/{org}/databases`` ``{"name", "group"[, "seed": {"type": "database",
    "name"}]}`` (409: exists), ``DELETE /v1/organizations/{org}/databases/{name}``,
    ``GET .../databases/{name}``; ``Authorization: Bearer $TURSO_API_TOKEN``."""

    name = "turso-api"

    def __init__(self, config: TenantsConfig, *, base_url: str = TURSO_API) -> None:
        if not config.org or not config.group:
            raise ConfigError("[tenants] provision = \"turso-api\" needs [tenants] org and group")
        token = os.environ.get(ENV_TURSO_API_TOKEN, "").strip()
        if not token:
            raise ConfigError(f"[tenants] provision = \"turso-api\": set ${ENV_TURSO_API_TOKEN} (a Platform API "
                              "token; it is read from the environment only)")
        self.org, self.group, self.seed = config.org, config.group, config.seed_database
        target = parse_target(base_url, token=token)
        self.label = f"Turso Platform API ({target.label}, organization {self.org})"
        self.session = RemoteSession(target)

    def _path(self, name: str = "") -> str:
        return f"/v1/organizations/{quote(self.org or '')}/databases" + (f"/{quote(name)}" if name else "")

    def _refused(self, what: str, exc: Exception) -> ProvisionError:
        hint = f" (check ${ENV_TURSO_API_TOKEN})" if isinstance(exc, RemoteAuthError) else ""
        return ProvisionError(f"{self.label} refused to {what}{hint}: {exc}")

    def check(self) -> None:
        try:
            self.session.get(self._path(), retry=False)
        except RemoteError as exc:
            raise self._refused("list databases", exc) from None

    def create(self, name: str) -> bool:
        body: dict[str, Any] = {"name": name, "group": self.group}
        if self.seed:
            body["seed"] = {"type": "database", "name": self.seed}
        try:
            resp = self.session.post_json(self._path(), body, allow=frozenset({409}))
        except RemoteError as exc:  # 402/403 (quota, plan) and 4xx answers name the database
            raise self._refused(f"create database {name!r}", exc) from None
        return resp.status != 409

    def delete(self, name: str) -> bool:
        try:
            resp = self.session.delete(self._path(name), allow=frozenset({404}))
        except RemoteError as exc:
            raise self._refused(f"delete database {name!r}", exc) from None
        return resp.status != 404

    def exists(self, name: str) -> bool | None:
        try:
            resp = self.session.get(self._path(name), allow=frozenset({404}), retry=False)
        except RemoteError:
            return None
        return resp.status != 404

    def close(self) -> None:
        self.session.close()


def make_provisioner(config: TenantsConfig, pattern: UrlPattern) -> Provisioner:
    if config.provision == "sqld-admin":
        if not config.admin_url:
            raise ConfigError("[tenants] provision = \"sqld-admin\" needs [tenants] admin_url "
                              "(sqld's --admin-listen-addr, e.g. http://127.0.0.1:8081)")
        return SqldAdmin(config.admin_url, pattern)
    if config.provision == "turso-api":
        return TursoApi(config)
    return NoProvisioner()


# -- the registry (in the hub file) ----------------------------------------------------------
def read_registry(hub: apsw.Connection) -> dict[str, dict[str, Any]]:
    """label -> {"tenant", "status", "url"}."""
    return state.read_scope(hub, REGISTRY_SCOPE)


def registry_of(hub_path: str | Path) -> dict[str, dict[str, Any]]:
    if not Path(hub_path).is_file():
        return {}
    conn = apsw.Connection(str(hub_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return read_registry(conn)
    finally:
        conn.close()


def check_collisions(pattern: UrlPattern, tenants: Mapping[str, Any] | set[str] | list[str],
                     recorded: Mapping[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """tenant -> label for ``tenants``; two ids with one label (also one recorded before) are refused."""
    owner = {label: rec["tenant"] for label, rec in (recorded or {}).items()}
    out: dict[str, str] = {}
    for tenant in tenants:
        label = pattern.label(tenant, table="(tenant id)", key=tenant)
        other = owner.setdefault(label, tenant)
        if other != tenant:
            raise TenantIdError(f"tenant ids {other!r} and {tenant!r} both map to database label {label!r} "
                                f"({pattern.url(label)}); rename one of them on the source")
        out[tenant] = label
    return out


def check_source_labels(dsn: str, tables: Any, *, column: str, pattern: UrlPattern, hub_path: str | Path) -> None:
    """Before anything changes: no two tenant ids on the source (or one on the source and one recorded
    in the hub) map to the same database label (TenantIdError names both)."""
    from psycopg import sql

    from pg2edge import dsn as dsnlib
    from pg2edge.pipeline.preflight import has_column

    ids: set[str] = set()
    with dsnlib.control(dsn) as conn:
        for schema, table in tables:
            if has_column(conn, schema, table, column):
                query = sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE {c} IS NOT NULL").format(
                    c=sql.Identifier(column), t=sql.Identifier(schema, table))
                ids.update(r[0] for r in conn.execute(query))
    check_collisions(pattern, sorted(ids), registry_of(hub_path))


class RemoteTenants:
    """The tenant databases of one URL pattern: provisioning, registry, seeding, per-tenant sinks."""

    def __init__(self, config: TenantsConfig) -> None:
        self.config = config
        self.pattern = parse_url_pattern(config.pattern)
        self.provisioner = make_provisioner(config, self.pattern)
        self.pool = shared_pool(max_connections=config.max_connections)
        self._like: HranaClient | None = None
        digest = hashlib.sha256(config.pattern.encode()).hexdigest()[:12]
        base = os.environ.get("PG2EDGE_STAGING_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pg2edge", "staging")
        self.staging = Path(base) / f"tenants-{digest}"

    # -- names ------------------------------------------------------------------------------
    def label(self, tenant: str) -> str:
        return self.pattern.label(tenant)

    def target(self, tenant: str) -> RemoteTarget:
        return parse_target(self.pattern.url(self.label(tenant)), token=resolve_token() or None)

    def client(self, tenant: str) -> HranaClient:
        target = self.target(tenant)
        client = HranaClient(target, session=RemoteSession(target, pool=self.pool), like=self._like)
        self._like = self._like or client
        return client

    # -- lifecycle --------------------------------------------------------------------------
    def seed(self, *, hub: apsw.Connection, hub_path: str | Path, layout: Any, tenant: str, tenant_value: Any,
             position: state.Position, identity: state.SourceIdentity | None,
             stream: state.StreamInfo | None) -> int | None:
        """Create ``tenant``'s database (provisioning) and fill it from the hub; None if it was complete."""
        from pg2edge.pipeline.remote.upload import upload_replica
        from pg2edge.pipeline.tenants.split import create_tenant_file

        registry = read_registry(hub)
        label = check_collisions(self.pattern, [tenant], registry)[tenant]
        rec = registry.get(label)
        if rec is not None and rec.get("status") == "created":
            return None
        if rec is not None and rec.get("status") == "deleted":
            raise TenantIdError(f"tenant {tenant!r} was deleted (`pg2edge tenant delete`); its changes are not "
                                "applied")
        staged = layout.config.model_copy(update={"pattern": str(self.staging / "{tenant}.db")})
        local = type(layout)(config=staged, tenant_tables=layout.tenant_tables, shared_tables=layout.shared_tables,
                             plan=layout.plan)
        path, rows = create_tenant_file(hub_path=hub_path, layout=local, tenant=tenant, tenant_value=tenant_value,
                                        position=position, identity=identity, stream=stream)
        name = self.pattern.host_label(label) if self.provisioner.name == "sqld-admin" else label
        created = self.provisioner.create(name)
        client = self.client(tenant)
        try:
            up = upload_replica(path, client, say=log.info)
        finally:
            client.close()
        with hub:
            state.write_record(hub, REGISTRY_SCOPE, label, {"tenant": tenant, "status": "created",
                                                            "url": self.pattern.url(label)})
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        log.info("tenant %r: database %s %s (%d rows)", tenant, self.pattern.url(label),
                 "created" if created else "filled", up.rows)
        return up.rows if rows is not None or not up.already_complete else None

    def open_sink(self, tenant: str, mappings: Mapping[tuple[str, str], Any]) -> Any:
        from pg2edge.pipeline.sinks.libsql import LibsqlSink

        client = self.client(tenant)
        try:
            return LibsqlSink(client, mappings, label=f"tenant {tenant!r} ({client.label})")
        except BaseException:
            client.close()
            raise

    def gone(self, tenant: str) -> bool:
        """True when the provider says the tenant's database does not exist (False when unknown)."""
        label = self.label(tenant)
        name = self.pattern.host_label(label) if self.provisioner.name == "sqld-admin" else label
        return self.provisioner.exists(name) is False

    def delete(self, hub: apsw.Connection, tenant: str) -> str:
        """Record ``tenant`` as deleted (its later changes are not applied), then drop its database."""
        label = self.label(tenant)
        rec = read_registry(hub).get(label)
        if rec is None or rec.get("tenant") != tenant:
            raise TenantIdError(f"no database is recorded for tenant {tenant!r} (pattern {self.pattern.text})")
        url = self.pattern.url(label)
        if isinstance(self.provisioner, NoProvisioner):
            self.provisioner.delete(label)  # refuses before anything is recorded
        self.provisioner.check()  # the API answers and takes our key: refused now, nothing recorded
        with hub:  # first: a running sync stops writing to it before it disappears
            state.write_record(hub, REGISTRY_SCOPE, label, {**rec, "status": "deleted"})
        name = self.pattern.host_label(label) if self.provisioner.name == "sqld-admin" else label
        try:
            self.provisioner.delete(name)
        except ProvisionError as exc:  # stays deleted (a running sync may already skip its changes)
            raise ProvisionError(f"{exc}; tenant {tenant!r} is recorded as deleted but its database {url} still "
                                 "exists: run `pg2edge tenant delete` again") from None
        return url

    def close(self) -> None:
        self.provisioner.close()
        self.pool.close()


def reject_url_pattern(pattern: str, what: str) -> None:
    if is_url_pattern(pattern):
        raise ConfigError(f"tenant pattern {pattern!r} names databases by URL; {what} takes a file pattern "
                          "such as 'data/tenants/{tenant}.db'")


__all__ = ["ProvisionError", "RemoteTenants", "SqldAdmin", "TenantDatabaseGone", "TursoApi", "UrlPattern",
           "check_collisions", "is_url_pattern", "parse_url_pattern", "read_registry", "registry_of"]
