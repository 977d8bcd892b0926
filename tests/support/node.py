"""The pinned Node packages of tests/node (drizzle-orm, drizzle-kit, @libsql/client, typescript, tsx).

`.ci/run` installs them with `npm ci`; a test that needs them fails with that instruction when they are
missing (it never skips silently).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
MODULES = NODE_DIR / "node_modules"


def tool(name: str) -> Path:
    """The path of ``node_modules/.bin/NAME``; fails the test when tests/node is not installed."""
    path = MODULES / ".bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: install the pinned Node packages with `cd tests/node && npm ci` "
                    "(.ci/run does this)")
    return path


def workdir(path: Path) -> Path:
    """An ES-module folder that resolves imports from tests/node/node_modules."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "package.json").write_text('{"type": "module"}\n')
    link = path / "node_modules"
    if not link.exists():
        link.symlink_to(MODULES, target_is_directory=True)
    return path


def run(args: list[str | Path], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def typecheck(cwd: Path, *files: str) -> subprocess.CompletedProcess[str]:
    """``tsc --strict --noEmit`` on ``files`` (ES modules, Node resolution)."""
    return run([tool("tsc"), "--strict", "--noEmit", "--skipLibCheck", "--module", "nodenext",
                "--moduleResolution", "nodenext", "--target", "es2022", "--allowImportingTsExtensions",
                *files], cwd)
