"""The one configuration model: ``pg2edge.toml``, then environment, then flags.

Every section forbids unknown keys, so a typo is an error that names the key
instead of a setting silently ignored. Later phases add their own section
here; commands receive a validated :class:`Config`, never a raw dict.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from pg2edge.errors import ConfigError

DEFAULT_CONFIG_FILE = "pg2edge.toml"
ENV_SOURCE = "PG2EDGE_SOURCE"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds from '90', '90s', '5m', '1.5h', '2d' or '250ms'; ValueError names the text."""
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"duration {text!r} is negative")
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"duration {text!r} is not a number with an optional unit ms|s|m|h|d (e.g. '5m')")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Section):
    dsn: str | None = None


class TargetConfig(_Section):
    """The replica: a SQLite file path, or a remote URL (libsql://, https://, http://, d1+https://).

    ``auth_token`` is the remote target's token when $PG2EDGE_TARGET_AUTH_TOKEN and $TURSO_AUTH_TOKEN
    are unset; it is never printed (SecretStr) and there is deliberately no flag for it.
    """

    path: str | None = None
    auth_token: SecretStr | None = None
    # how a libSQL/Turso URL target takes its snapshot: "direct" (rows over Hrana as read) or "staged"
    # (a local staging file, then uploaded); None: the default (pipeline.sinks.libsql.DEFAULT_SNAPSHOT_PATH)
    snapshot_path: Literal["direct", "staged"] | None = None

    def token(self) -> str | None:
        return self.auth_token.get_secret_value() if self.auth_token is not None else None


class VerdictRules(_Section):
    """Read/write ratio thresholds: ratio >= excellent, >= good, >= maybe, else keep."""

    excellent: float = 1000.0
    good: float = 10.0
    maybe: float = 2.0

    @model_validator(mode="after")
    def _ordered(self) -> VerdictRules:
        if not (self.excellent >= self.good >= self.maybe > 0):
            raise ValueError(
                "analyze.verdicts must satisfy excellent >= good >= maybe > 0 "
                f"(got excellent={self.excellent}, good={self.good}, maybe={self.maybe})"
            )
        return self


TargetProfile = Literal["sqlite", "turso", "d1", "litefs"]


class AnalyzeConfig(_Section):
    window: float = 0.0
    target_profile: TargetProfile = "sqlite"
    verdicts: VerdictRules = Field(default_factory=VerdictRules)
    schemas: list[str] = Field(default_factory=lambda: ["public"])

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class TranslateConfig(_Section):
    numeric: Literal["text", "integer", "real"] = "text"
    timestamps: Literal["iso", "unix", "unix_ms"] = "iso"
    foreign_keys: Literal["keep", "drop"] = "keep"
    strict_tables: bool = False
    fts5: bool = False
    cast: dict[str, str] = Field(default_factory=dict)
    # A value SQLite cannot hold exactly: "record" stores the documented substitute and
    # records a named finding; "raise" stops with CodecError naming table.column and value.
    inexact: Literal["record", "raise"] = "record"


class CutoverConfig(_Section):
    """Thresholds of the cutover checklist (``pg2edge cutover check``)."""

    max_lag_bytes: int = 1024 * 1024
    max_lag_seconds: float = 5.0
    max_retained_wal_bytes: int = 1024**3
    validation_max_age: float = 3600.0  # seconds; "60m" in TOML

    @field_validator("max_lag_seconds", "validation_max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class TenantsConfig(_Section):
    """Database-per-tenant split (pipeline.tenants): one SQLite file per value of ``column``."""

    column: str = "tenant_id"
    pattern: str = "data/tenants/{tenant}.db"
    # tables without the column: copied into "every" tenant file, or kept in one shared "file"
    shared: Literal["every", "file"] = "every"
    # the shared file; it is also the staging (hub) file of the snapshot and holds the stream's state
    # (default: _shared.db in the pattern's folder)
    shared_path: str = "data/tenants/_shared.db"
    max_open: int = Field(default=256, ge=1)
    # a URL pattern (libsql://{tenant}-myorg.turso.io, http://{tenant}.localhost:8080): one libSQL
    # database per tenant, created before its first row by "sqld-admin" (POST {admin_url}/v1/namespaces/
    # NAME/create) or "turso-api" (Turso's Platform API: org, group, optional seed database; the token
    # from $TURSO_API_TOKEN only); "none": the databases exist already
    provision: Literal["none", "sqld-admin", "turso-api"] = "none"
    admin_url: str | None = None
    org: str | None = None
    group: str | None = None
    seed_database: str | None = None
    max_connections: int = Field(default=8, ge=1)  # HTTP connections over all tenant databases = tenants applied at once

    @model_validator(mode="before")
    @classmethod
    def _shared_beside_pattern(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "://" in str(data.get("pattern") or ""):
            return data  # a URL pattern: the hub file stays where shared_path says (default data/tenants/)
        if isinstance(data, Mapping) and "pattern" in data and not data.get("shared_path"):
            folder = os.path.dirname(str(data["pattern"]))
            data = {**data, "shared_path": os.path.join(folder, "_shared.db")}
        return data


class Config(_Section):
    source: SourceConfig = Field(default_factory=SourceConfig)
    target: TargetConfig = Field(default_factory=TargetConfig)
    tables: list[str] = Field(default_factory=list)
    analyze: AnalyzeConfig = Field(default_factory=AnalyzeConfig)
    translate: TranslateConfig = Field(default_factory=TranslateConfig)
    cutover: CutoverConfig = Field(default_factory=CutoverConfig)
    tenants: TenantsConfig = Field(default_factory=TenantsConfig)

    def require_source(self) -> str:
        """The source DSN, or a ConfigError that says every way to give one."""
        if not self.source.dsn:
            raise ConfigError(
                f"no source database: pass --source DSN, set {ENV_SOURCE}, "
                f"or set [source] dsn in {DEFAULT_CONFIG_FILE}"
            )
        return self.source.dsn

    def require_target(self) -> str:
        """The replica file, or a ConfigError that says how to give one."""
        if not self.target.path:
            raise ConfigError(f"no replica: pass --target FILE.db (or a libsql:// / https:// / http:// URL) or set "
                              f"[target] path in {DEFAULT_CONFIG_FILE}")
        return self.target.path


def _format_error(origin: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{origin}: unknown key '{where}'")
        else:
            value = err.get("input")
            shown = "" if isinstance(value, dict) or "token" in where else f" (got {value!r})"
            lines.append(f"{origin}: {where}: {err['msg']}{shown}")
    return "; ".join(lines)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read ``path`` (or ./pg2edge.toml when present), apply env then ``overrides``.

    ``overrides`` is a nested dict of values given as flags; None values are
    ignored so an absent flag never erases a file setting.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    origin = "configuration"
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        origin = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if env.get(ENV_SOURCE):
        data = _deep_merge(data, {"source": {"dsn": env[ENV_SOURCE]}})
    if overrides:
        data = _deep_merge(data, _drop_none(overrides))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(origin, exc)) from None


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out
