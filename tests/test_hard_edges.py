"""Issue 17, one test per defect: each reproduced the defect before the fix (see tests/test_bad_input.py
for the table of bad inputs, which covers defects 2, 5, 7, 8, 10 and 11 through the CLI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest

from pg2edge.config import TenantsConfig
from pg2edge.pipeline import state
from pg2edge.pipeline.sources import keeper
from pg2edge.pipeline.sources.snapshot import run_snapshot
from pg2edge.pipeline.tenants.admin import list_tenants
from pg2edge.pipeline.tenants.errors import TenantIdError
from pg2edge.pipeline.tenants.ids import MAX_ID_BYTES, tenant_path
from tests.conftest import REPO, _cli_env
from tests.support.replica import assert_replica_equals
from tests.support.rows import file_rows, pg_rows, run_sql

MAX_NAME_BYTES = 255  # the file name limit of ext4, xfs, btrfs, tmpfs


def _quiet(_: str) -> None:
    pass


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _one_error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith(f"pg2edge {command}: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


# -- 1. tenant ids: every accepted id has a file name within 255 bytes ---------------------------------------
@pytest.mark.parametrize("char", ["é", "日", "🎉", "/", "a", "%"])
def test_every_accepted_tenant_id_fits_a_file_name(tmp_path: Path, char: str) -> None:
    pattern = str(tmp_path / "tenant-{tenant}.sqlite3")
    longest = char * (MAX_ID_BYTES // len(char.encode()))
    names = set()
    for tenant in (longest, longest[:-1], char, longest[:-1] + "x"):
        path = tenant_path(pattern, tenant)
        assert path.parent == tmp_path and len(path.name.encode()) <= MAX_NAME_BYTES, (tenant, path.name)
        names.add(path.name)
        assert tenant_path(pattern, tenant) == path  # stable
    assert len(names) == 4  # distinct ids, distinct files
    with pytest.raises(TenantIdError, match="NUL"):
        tenant_path(pattern, "a\x00b")
    with pytest.raises(TenantIdError, match="longer than"):
        tenant_path(pattern, "x" * (MAX_ID_BYTES + 1))


def test_long_non_ascii_tenant_id_in_snapshot_sync_and_list(pg_dsn: str, tmp_path: Path, run_cli) -> None:
    long_id = "é" * 100  # 200 bytes: percent-encoded it was a 603-byte file name (CantOpenError, exit 1)
    run_sql(pg_dsn, "CREATE TABLE notes (tenant_id text, id int, body text, PRIMARY KEY (tenant_id, id))",
            "INSERT INTO notes VALUES ('acme', 1, 'a')")
    run_sql(pg_dsn, "INSERT INTO notes VALUES (%s, 2, 'long')", params=(long_id,))
    pattern = str(tmp_path / "t" / "{tenant}.db")
    done = run_cli("sync", "--source", pg_dsn, "--tenant-pattern", pattern, "--until-caught-up")
    assert done.returncode == 0, done.stderr
    other = "日" * 66  # a tenant that first appears in the stream (tenant sync creates its file)
    run_sql(pg_dsn, "INSERT INTO notes VALUES (%s, 3, 'stream')", params=(other,))
    run_sql(pg_dsn, "UPDATE notes SET body = 'changed' WHERE id = 2")
    done = run_cli("sync", "--source", pg_dsn, "--tenant-pattern", pattern, "--until-caught-up")
    assert done.returncode == 0, done.stderr
    files = list_tenants(pattern)
    assert set(files) == {"acme", long_id, other}
    assert file_rows(files[long_id].path, "SELECT tenant_id, id, body FROM notes") == [(long_id, 2, "changed")]
    assert file_rows(files[other].path, "SELECT id, body FROM notes") == [(3, "stream")]
    listed = run_cli("tenant", "list", "--pattern", pattern)
    assert listed.returncode == 0 and f"{long_id}\t" in listed.stdout and f"{other}\t" in listed.stdout


# -- 3. a failed tenant split can be retried once the row is fixed ------------------------------------------
def test_a_failed_split_is_retried_after_the_row_is_fixed(pg_dsn: str, tmp_path: Path, run_cli) -> None:
    run_sql(pg_dsn, "CREATE TABLE notes (tenant_id text, id int, PRIMARY KEY (tenant_id, id))",
            "INSERT INTO notes VALUES ('acme', 1), ('', 2), ('beta', 3)")
    cfg = TenantsConfig(pattern=str(tmp_path / "t" / "{tenant}.db"))
    # the hub copy of an earlier run that failed on the empty id (taken before ids were checked up front)
    os.makedirs(tmp_path / "t")
    run_snapshot(dsn=pg_dsn, target=cfg.shared_path, say=_quiet)
    failed = run_cli("snapshot", "--source", pg_dsn, "--tenant-pattern", cfg.pattern)
    assert "empty tenant id" in _one_error_line(failed, "snapshot")  # still bad on the source: named up front
    run_sql(pg_dsn, "UPDATE notes SET tenant_id = 'gamma' WHERE id = 2")  # the operator fixes the row
    retried = run_cli("snapshot", "--source", pg_dsn, "--tenant-pattern", cfg.pattern)
    assert retried.returncode == 0, retried.stderr
    assert "retaking the hub snapshot" in retried.stdout
    files = list_tenants(cfg.pattern)
    assert set(files) == {"acme", "beta", "gamma"}
    assert file_rows(files["gamma"].path, "SELECT tenant_id, id FROM notes") == [("gamma", 2)]
    synced = run_cli("sync", "--source", pg_dsn, "--tenant-pattern", cfg.pattern, "--until-caught-up")
    assert synced.returncode == 0, synced.stderr


# -- 4. SIGKILL during the snapshot leaves no process; SIGTERM keeps the snapshot for a resume ---------------
def _descendants(root: int) -> dict[int, str]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                try:
                    with open(f"/proc/{child}/cmdline", "rb") as fh:
                        found[child] = fh.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                todo.append(child)
    return found


def _run_record(path: Path) -> dict | None:
    try:
        db = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error:
        return None
    try:
        return state.read_record(db, keeper.RUN_SCOPE, keeper.RUN_NAME)
    except apsw.Error:
        return None
    finally:
        db.close()


def _copying(path: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = _run_record(path)
        if run and run.get("status") == "copying":
            return run
        time.sleep(0.1)
    raise AssertionError("the snapshot never started copying")


def _walsenders(dsn: str) -> int:
    return int(pg_rows(dsn, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' "
                            "AND datname = current_database()")[0][0])


def _big(dsn: str) -> None:
    run_sql(dsn, "CREATE TABLE big (id bigint PRIMARY KEY, body text)",
            "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 400000) g",
            "CREATE TABLE small (id int PRIMARY KEY)", "INSERT INTO small VALUES (1)")


def _start(dsn: str, target: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--source", dsn, "--target", str(target),
                             "--jobs", "2"], env=_cli_env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_during_the_snapshot_leaves_no_process_after_5_s(pg_dsn: str, sqlite_path: Path) -> None:
    _big(pg_dsn)
    proc = _start(pg_dsn, sqlite_path)
    try:
        _copying(sqlite_path)
        time.sleep(0.5)
        children = _descendants(proc.pid)
        assert any("pg2edge.pipeline.sources.keeper" in c for c in children.values()), children
        assert any("spawn_main" in c for c in children.values()), children  # copy workers
        assert any("resource_tracker" in c for c in children.values()), children
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        time.sleep(5)
        left = {pid: cmd for pid, cmd in children.items() if process_alive(pid)}
        assert not left, left
        assert _walsenders(pg_dsn) == 0  # the keeper's session (idle in transaction) is gone too
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    messages: list[str] = []
    from pg2edge.pipeline.daemon import run_sync

    report = run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=messages.append)
    assert report.snapshot is not None and report.snapshot.restarted  # a killed snapshot restarts cleanly
    assert_replica_equals(pg_dsn, sqlite_path)


@pytest.mark.slow
def test_sigterm_during_the_snapshot_keeps_the_keeper_past_the_crash_grace(pg_dsn: str, sqlite_path: Path) -> None:
    _big(pg_dsn)
    proc = _start(pg_dsn, sqlite_path)
    try:
        run = _copying(sqlite_path)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert (_run_record(sqlite_path) or {}).get("held") is True
    time.sleep(5)  # longer than the keeper's crash grace (3 s)
    assert process_alive(int(run["keeper_pid"]))  # an orderly stop: held for the rerun
    from pg2edge.pipeline.daemon import run_sync

    report = run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    assert report.snapshot is not None and not report.snapshot.restarted
    assert_replica_equals(pg_dsn, sqlite_path)
    deadline = time.monotonic() + 10
    while process_alive(int(run["keeper_pid"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(int(run["keeper_pid"]))  # released once the snapshot is done


# -- 6. a full disk says so, and the run can be retried once there is space ---------------------------------
def test_full_disk_names_the_replica_and_a_rerun_continues(pg_dsn: str, tmp_path: Path, run_cli) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, body text)", "INSERT INTO t VALUES (1, 'x')")
        target = disk / "r.db"
        first = run_cli("sync", "--source", pg_dsn, "--target", str(target), "--until-caught-up")
        assert first.returncode == 0, first.stderr
        run_sql(pg_dsn, "INSERT INTO t SELECT g, md5(g::text) || repeat('y', 4000) FROM generate_series(2, 1500) g")
        full = run_cli("sync", "--source", pg_dsn, "--target", str(target), "--until-caught-up")
        line = _one_error_line(full, "sync")
        assert f"replica {target}: database or disk is full" in line, line
        assert "cannot rollback" not in full.stderr
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = run_cli("sync", "--source", pg_dsn, "--target", str(target), "--until-caught-up")
        assert again.returncode == 0, again.stderr
        assert_replica_equals(pg_dsn, target)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# -- 9. float -0 is a named finding in snapshot and stream (SQLite's REAL keeps no sign of zero) ------------
def test_negative_zero_is_reported_by_name_in_snapshot_and_stream(pg_dsn: str, sqlite_path: Path,
                                                                 tmp_path: Path, run_cli) -> None:
    run_sql(pg_dsn, "CREATE TABLE z (id int PRIMARY KEY, f4 float4, f8 float8)",
            "INSERT INTO z VALUES (1, '-0', '-0'), (2, 1.5, 0)")
    snap = run_cli("sync", "--source", pg_dsn, "--target", str(sqlite_path), "--until-caught-up")
    assert snap.returncode == 0, snap.stderr
    assert "public.z.f4: value '-0'" in snap.stderr and "public.z.f8: value '-0'" in snap.stderr
    run_sql(pg_dsn, "INSERT INTO z VALUES (3, '-0', '-0')")
    stream = run_cli("sync", "--source", pg_dsn, "--target", str(sqlite_path), "--until-caught-up")
    assert stream.returncode == 0, stream.stderr
    assert "public.z.f8: value '-0'" in stream.stderr and "sign of zero" in stream.stderr
    assert file_rows(sqlite_path, "SELECT id, f4, f8 FROM z ORDER BY id") == [(1, 0.0, 0.0), (2, 1.5, 0.0),
                                                                                (3, 0.0, 0.0)]
    checked = run_cli("validate", "--source", pg_dsn, "--target", str(sqlite_path), "--mode", "full")
    assert checked.returncode == 0, checked.stdout + checked.stderr  # codec-normalized: -0 compares as 0
    # inexact = "raise": one line naming table.column, exit 2 (issue 11: the copy worker's error)
    (tmp_path / "raise.toml").write_text('[translate]\ninexact = "raise"\n')
    raised = run_cli("sync", "--config", str(tmp_path / "raise.toml"), "--source", pg_dsn,
                     "--target", str(tmp_path / "strict.db"), "--until-caught-up")
    assert "public.z.f4: value '-0'" in _one_error_line(raised, "sync")


def test_codec_keeps_every_other_float_and_flags_only_negative_zero() -> None:
    from pg2edge.translators.codec.base import Inexact
    from pg2edge.translators.codec.scalars import float_python, float_text

    for text in ("0", "1.5", "-1.5", "Infinity", "-Infinity", "1e-45", "-1e-45"):
        assert float_text(text) == float(text) and float_python(float(text)) == float(text)
    for encode, value in ((float_text, "-0"), (float_python, -0.0)):
        with pytest.raises(Inexact) as err:
            encode(value)  # type: ignore[operator]
        assert err.value.code == "float-negative-zero" and err.value.substitute == 0.0


# -- 10. a failed connection leaves no file (the table checks the same through the CLI) ----------------------
def test_failed_connection_creates_no_replica_file(tmp_path: Path) -> None:
    from pg2edge.errors import SourceError
    from pg2edge.pgcluster import free_port

    target = tmp_path / "r.db"
    with pytest.raises(SourceError, match="cannot connect"):
        run_snapshot(dsn=f"host=127.0.0.1 port={free_port()} dbname=x user=postgres", target=target, say=_quiet)
    assert list(tmp_path.iterdir()) == []
