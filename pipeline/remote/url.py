"""Remote target URLs and their token.

=====================  ===========================================  ==========
given                  requests go to                               kind
=====================  ===========================================  ==========
``libsql://HOST``      ``https://HOST`` (Turso's form: always TLS)   libsql
``https://HOST[:P]``   as given                                     libsql
``http://HOST:P``      as given (a local sqld or tursodb)           libsql
``d1+https://HOST``    ``https://HOST`` (the pg2edge D1 Worker)      d1
``d1+http://HOST:P``   ``http://HOST:P``                            d1
=====================  ===========================================  ==========

A host under ``.localhost`` (``http://acme.localhost:8080``, a local sqld with
namespaces) is reached on 127.0.0.1 with the name sent as the Host header:
RFC 6761 reserves those names for loopback whatever the system resolver does
(this machine's resolver does not resolve them), and sqld picks the namespace
from the Host header's first label.

The token comes from ``PG2EDGE_TARGET_AUTH_TOKEN``, then ``TURSO_AUTH_TOKEN``,
then ``[target] auth_token`` in the config file; never from the URL (it would
show in ``ps``), so a URL with a user:password or an ``authToken`` query is
refused without echoing it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pg2edge.pipeline.remote.errors import RemoteURLError

ENV_TOKEN = "PG2EDGE_TARGET_AUTH_TOKEN"
ENV_TURSO_TOKEN = "TURSO_AUTH_TOKEN"

Kind = Literal["libsql", "d1"]

_SCHEMES: dict[str, tuple[Kind, str]] = {
    "libsql": ("libsql", "https"),
    "https": ("libsql", "https"),
    "http": ("libsql", "http"),
    "d1+https": ("d1", "https"),
    "d1+http": ("d1", "http"),
}
_SECRET_QUERY_KEYS = frozenset({"authtoken", "auth_token", "token", "jwt", "password"})


@dataclass(frozen=True, slots=True)
class RemoteTarget:
    """A parsed remote target. ``label`` is what messages show; ``token`` never appears in repr."""

    kind: Kind
    base_url: str  # scheme://host[:port][/path], no trailing slash; requests append /v2/pipeline etc.
    label: str  # the URL as the operator wrote it, minus anything secret
    token: str | None = field(default=None, repr=False, compare=False)
    host_header: str | None = None  # sent as Host (a *.localhost name reached on 127.0.0.1)

    def __str__(self) -> str:
        return self.label


def is_remote(target: object) -> bool:
    """True for a target URL (any scheme in the table above), False for a file path."""
    text = str(target)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in _SCHEMES


def resolve_token(*, env: Mapping[str, str] | None = None, config_token: str | None = None) -> str | None:
    """The auth token: $PG2EDGE_TARGET_AUTH_TOKEN, else $TURSO_AUTH_TOKEN, else the config file's."""
    env = os.environ if env is None else env
    for name in (ENV_TOKEN, ENV_TURSO_TOKEN):
        value = env.get(name, "").strip()
        if value:
            return value
    return config_token.strip() if config_token and config_token.strip() else None


def parse_target(text: str, *, env: Mapping[str, str] | None = None, config_token: str | None = None,
                 token: str | None = None) -> RemoteTarget:
    """Parse a target URL (see the module table); ``token`` overrides the environment and config."""
    raw = text.strip()
    scheme, sep, _ = raw.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        what = f"unknown target scheme {scheme}://" if sep else "not a remote URL"
        raise RemoteURLError(f"target {_shown(raw)!r}: {what} (a target is a SQLite file path, or libsql://HOST, "
                             "https://HOST, http://HOST:PORT, d1+https://HOST or d1+http://HOST:PORT)")
    kind, wire = _SCHEMES[scheme.lower()]
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise RemoteURLError(f"target {_shown(raw)!r}: malformed URL (bad host or port)") from None
    host = parts.hostname
    if parts.username is not None or parts.password is not None:
        raise RemoteURLError(f"target {scheme}://{host or '?'}: the URL carries a user or password; "
                             f"give the token in ${ENV_TOKEN} instead (never on the command line)")
    secret = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True) if k.lower() in _SECRET_QUERY_KEYS]
    if secret:
        raise RemoteURLError(f"target {scheme}://{host or '?'}: the URL carries a credential ({secret[0]}=...); "
                             f"give the token in ${ENV_TOKEN} instead (never on the command line)")
    if parts.query or parts.fragment:
        raise RemoteURLError(f"target {_shown(raw)!r}: a query string or fragment is not supported")
    if not host:
        raise RemoteURLError(f"target {_shown(raw)!r}: no host")
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    path = parts.path.rstrip("/")
    label = f"{scheme.lower()}://{netloc}{path}"
    resolved = token if token is not None else resolve_token(env=env, config_token=config_token)
    host_header = None
    if host.lower().endswith(".localhost"):  # RFC 6761: loopback, whatever the resolver says
        host_header = netloc
        netloc = "127.0.0.1" + (f":{port}" if port is not None else "")
    return RemoteTarget(kind=kind, base_url=f"{wire}://{netloc}{path}", label=label, token=resolved,
                        host_header=host_header)


def _shown(raw: str) -> str:
    """A URL safe to print: everything after '?' or '#' and any userinfo dropped."""
    head = raw.split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = head.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def resolve(target: str, *, config_token: str | None = None, env: Mapping[str, str] | None = None) -> str | RemoteTarget:
    """A command's ``--target``: a RemoteTarget for a URL (token resolved now), else the path unchanged."""
    if is_remote(target) or "://" in target:  # an unknown scheme is a URL mistake, not a file name
        return parse_target(target, env=env, config_token=config_token)
    return target
