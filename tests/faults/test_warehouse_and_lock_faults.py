"""The warehouse file and run locks: corrupt, locked by another process, concurrent runs of one date."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import date

import pytest

from batch.cli import main
from batch.errors import EXIT_LOCKED, AlreadyRunningError, WarehouseLockedError
from batch.locks import RunLock, run_lock_url
from batch.warehouse.duckdb import DuckDBWarehouse

D = date(2026, 11, 21)


def test_corrupt_warehouse_file_is_bad_input_naming_the_path(reco_home, capsys):
    reco_home.mkdir(parents=True)
    db = reco_home / "warehouse.duckdb"
    db.write_bytes(b"not a database" * 1000)
    code = main(["run", "--pipeline", "demo", "--date", "2026-11-21"])
    err = capsys.readouterr().err
    assert code == 65 and str(db) in err and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_warehouse_file_is_bad_input(reco_home, capsys):
    reco_home.mkdir(parents=True)
    DuckDBWarehouse(str(reco_home / "warehouse.duckdb")).close()
    os.chmod(reco_home / "warehouse.duckdb", 0o444)
    code = main(["data", "generate", "--pipeline", "demo", "--users", "50", "--items", "40", "--days", "3"])
    assert code == 65 and "warehouse.duckdb" in capsys.readouterr().err


def _hold_duckdb(path, seconds):
    code = f"import duckdb,time; c=duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep({seconds})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_warehouse_writes_wait_for_another_process_lock(tmp_path):
    db = tmp_path / "w.duckdb"
    holder = _hold_duckdb(db, 1.5)
    try:
        started = time.monotonic()
        wh = DuckDBWarehouse(str(db), lock_timeout_s=30)  # waits instead of failing at once
        wh.close()
        assert time.monotonic() - started > 0.5
    finally:
        holder.wait()


def test_warehouse_lock_timeout_is_exit_75(tmp_path):
    db = tmp_path / "w.duckdb"
    holder = _hold_duckdb(db, 5)
    try:
        with pytest.raises(WarehouseLockedError) as e:
            DuckDBWarehouse(str(db), lock_timeout_s=0.3)
        assert e.value.exit_code == EXIT_LOCKED and str(db) in str(e.value)
    finally:
        holder.kill()
        holder.wait()


def test_run_lock_per_pipeline_and_date(tmp_path):
    root = str(tmp_path)
    first = RunLock(run_lock_url(root, "demo", D)).acquire()
    try:
        with pytest.raises(AlreadyRunningError) as e:
            RunLock(run_lock_url(root, "demo", D)).acquire(timeout_s=0)
        assert e.value.exit_code == EXIT_LOCKED and f"pid {os.getpid()}" in str(e.value)
        other_date = RunLock(run_lock_url(root, "demo", date(2026, 11, 20))).acquire()  # side by side
        other_date.release()
    finally:
        first.release()
    RunLock(run_lock_url(root, "demo", D)).acquire().release()  # free again


def test_second_run_waits_for_the_lock(tmp_path):
    url = run_lock_url(str(tmp_path), "demo", D)
    first = RunLock(url).acquire()
    threading.Timer(0.5, first.release).start()
    started = time.monotonic()
    second = RunLock(url).acquire(timeout_s=10, poll_s=0.1)
    assert time.monotonic() - started >= 0.4
    second.release()


def _stale_lock(url, **info):
    os.makedirs(os.path.dirname(url), exist_ok=True)
    base = {"owner": "x", "host": "elsewhere", "pid": 1, "since": "then", "expires_at": time.time() + 600}
    with open(url, "w") as f:
        json.dump({**base, **info}, f)


def test_expired_lock_of_a_crashed_holder_is_taken_over(tmp_path):
    url = run_lock_url(str(tmp_path), "demo", D)
    _stale_lock(url, expires_at=time.time() - 1)
    RunLock(url).acquire(timeout_s=0).release()


def test_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    url = run_lock_url(str(tmp_path), "demo", D)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    _stale_lock(url, host=socket.gethostname(), pid=int(dead.stdout))
    RunLock(url).acquire(timeout_s=0).release()


def test_live_lock_elsewhere_is_respected_and_heartbeat_extends_it(tmp_path):
    url = run_lock_url(str(tmp_path), "demo", D)
    _stale_lock(url)  # another host, not expired
    with pytest.raises(AlreadyRunningError):
        RunLock(url).acquire(timeout_s=0)
    os.remove(url)
    lock = RunLock(url, ttl_s=0.6).acquire()
    first = json.load(open(url))["expires_at"]
    deadline = time.monotonic() + 3.0  # a beat every 0.2 s; the margin is for a loaded CI machine
    while json.load(open(url))["expires_at"] == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.load(open(url))["expires_at"] > first  # renewed
    lock.release()
    assert not os.path.exists(url)


def test_a_reader_never_sees_a_half_written_lock_while_it_is_renewed(tmp_path):
    """Renewals replace the file whole: another process reading the lock mid-renewal sees a complete holder."""
    url = run_lock_url(str(tmp_path), "demo", D)
    lock = RunLock(url, ttl_s=0.006).acquire()  # a renewal every 2 ms
    reads, unreadable, deadline = 0, 0, time.monotonic() + 1.0
    try:
        while time.monotonic() < deadline:
            with open(url) as f:
                text = f.read()
            reads += 1
            try:
                assert json.loads(text)["owner"] == lock.owner
            except ValueError:
                unreadable += 1
    finally:
        lock.release()
    assert reads > 100 and unreadable == 0, f"{unreadable} of {reads} reads found a half-written lock"


def test_reco_run_of_a_running_date_exits_75(reco_home, capsys):
    url = run_lock_url(str(reco_home / "artifacts"), "demo", D)
    held = RunLock(url).acquire()
    try:
        code = main(["run", "--pipeline", "demo", "--date", "2026-11-21"])
        err = capsys.readouterr().err
        assert code == 75 and "already running" in err and url in err
    finally:
        held.release()
