"""The wheel installs one import name, ``pg2edge``, and lives beside PyPI's ``validators`` package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_only_pg2edge_next_to_pypi_validators(tmp_path: Path) -> None:
    # build from a copy of what git tracks (a stale build/ of the checkout can never leak into the wheel)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    src = tmp_path / "src"
    for name in filter(None, (f.decode() for f in files)):
        if name.startswith("tests/node/"):
            continue
        target, origin = src / name, REPO / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            target.symlink_to(os.readlink(origin))
        else:
            shutil.copy2(origin, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, text=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("pg2edge-*.whl"))
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"pg2edge"}
    names = zipfile.ZipFile(wheel).namelist()
    for part in ("pipeline/engine.py", "pipeline/sinks/sqlite.py", "translators/codec/row.py", "validators/run.py",
                 "analyzers/core.py", "flows/phases.py"):
        assert f"pg2edge/{part}" in names, part

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel), "validators"], check=True,
                   capture_output=True, text=True, timeout=600)
    # pg2edge.validators' own dependencies come from the development environment, placed after the fresh ones
    deps = next(p for p in sys.path if p.endswith("site-packages"))
    probe = (
        "import sys; sys.path.append(%r)\n"
        "import validators, pg2edge, pg2edge.validators\n"
        "assert validators.email('ops@example.com') is True\n"
        "assert pg2edge.validators.__file__.startswith(%r), pg2edge.validators.__file__\n"
        "assert callable(pg2edge.validators.validate)\n"
        "print('ok')\n" % (deps, str(env_dir)))
    done = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
