"""``pg2edge export d1-worker DIR``: write the pg2edge D1 Worker project (source, wrangler.toml, .dev.vars).

The Worker's source ships inside pg2edge (``worker/index.js``) and is copied
unchanged, so what a user audits is what runs. ``.dev.vars`` holds the local
secret ``PG2EDGE_TOKEN`` for ``wrangler dev``: the value of
``PG2EDGE_TARGET_AUTH_TOKEN`` when it is set, else the one already there, else
a new random one. In
production the secret is set with ``wrangler secret put PG2EDGE_TOKEN``.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pg2edge.pipeline.d1.errors import D1Error

TOKEN_ENV = "PG2EDGE_TARGET_AUTH_TOKEN"
SECRET_NAME = "PG2EDGE_TOKEN"
COMPATIBILITY_DATE = "2025-01-01"  # workerd of wrangler 4.86 supports dates up to 2026-04-10
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True, slots=True)
class WorkerProject:
    directory: Path
    database: str
    files: list[Path]
    new_secret: bool  # .dev.vars was written with a new random secret

    def summary(self) -> str:
        secret = ("a new random local secret" if self.new_secret
                  else f"the local secret (from ${TOKEN_ENV} or kept)")
        return (f"wrote the pg2edge D1 Worker to {self.directory} (D1 binding DB -> database {self.database}; "
                f"{secret} in .dev.vars). Locally: cd {self.directory} && npx wrangler dev --local. "
                f"Deploy: wrangler d1 create {self.database}, put its id in wrangler.toml, "
                f"wrangler secret put {SECRET_NAME}, wrangler deploy.")


def worker_source() -> str:
    """The Worker's JavaScript, as shipped."""
    return resources.files("pg2edge.pipeline.d1").joinpath("worker", "index.js").read_text(encoding="utf-8")


def wrangler_toml(*, name: str, database: str, database_id: str = PLACEHOLDER_ID) -> str:
    return (f'name = "{name}"\n'
            'main = "index.js"\n'
            f'compatibility_date = "{COMPATIBILITY_DATE}"\n'
            "\n"
            "# The D1 database pg2edge replicates into. For production, replace database_id with the id\n"
            f"# printed by `wrangler d1 create {database}`; wrangler dev --local ignores it.\n"
            "[[d1_databases]]\n"
            'binding = "DB"\n'
            f'database_name = "{database}"\n'
            f'database_id = "{database_id}"\n'
            "\n"
            f"# The bearer secret: `wrangler secret put {SECRET_NAME}` (locally: .dev.vars, never committed).\n")


def export_worker(directory: str | Path, *, database: str = "pg2edge", name: str | None = None,
                  overwrite: bool = False, env: dict[str, str] | None = None) -> WorkerProject:
    """Write the Worker project into ``directory`` (created if missing)."""
    env = dict(os.environ) if env is None else env
    if not _NAME.match(database):
        raise D1Error(f"D1 database name {database!r}: use lower-case letters, digits and '-' (at most 63)")
    name = name or f"{database}-pg2edge"
    if not _NAME.match(name):
        raise D1Error(f"Worker name {name!r}: use lower-case letters, digits and '-' (at most 63)")
    out = Path(directory)
    files = {out / "index.js": worker_source(), out / "wrangler.toml": wrangler_toml(name=name, database=database),
             out / ".gitignore": ".dev.vars\n.wrangler/\n"}
    existing = [p for p in files if p.exists()]
    if existing and not overwrite:
        raise D1Error(f"{existing[0]} exists; pass --force to replace the Worker files")
    out.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    dev_vars = out / ".dev.vars"
    token = env.get(TOKEN_ENV) or ""
    new_secret = not token and not dev_vars.exists()  # else keep the secret the user already has
    if token or new_secret:
        _write_private(dev_vars, f"{SECRET_NAME}={token or secrets.token_urlsafe(32)}\n")
    return WorkerProject(directory=out, database=database, files=[*files, dev_vars], new_secret=new_secret)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
