"""The run lock on ``gs://``, against a Cloud Storage JSON API server (fixture ``gcs``, tests/faults/fake_gcs.py).

Each test drives the real google-cloud-storage client over HTTP: taking the lock is an upload with
``ifGenerationMatch=0``, renewing and deleting carry the holder's generation.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from datetime import date

import pytest

from batch.cli import main
from batch.errors import EXIT_FAILURE, EXIT_LOCKED, AlreadyRunningError, LockStorageError
from batch.locks import RunLock, run_lock_url
from tests.faults.conftest import GCS_BUCKET

D = date(2026, 11, 21)
ROOT = f"gs://{GCS_BUCKET}/artifacts"
URL = run_lock_url(ROOT, "demo", D)
NAME = URL.removeprefix(f"gs://{GCS_BUCKET}/")


def stored(gcs) -> dict | None:
    obj = gcs.object(GCS_BUCKET, NAME)
    return None if obj is None else json.loads(obj.data)


def someone_elses_lock(gcs, **info) -> int:
    """A lock object another run wrote (another host, live unless told otherwise); returns its generation."""
    base = {"owner": "other", "host": "elsewhere", "pid": 1, "since": "then", "expires_at": time.time() + 600}
    return gcs.put(GCS_BUCKET, NAME, json.dumps({**base, **info}).encode())


def eventually(condition, what: str, within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen")
        time.sleep(0.02)


def test_acquire_writes_the_lock_object_and_release_deletes_it(gcs):
    lock = RunLock(URL, what="reco run demo 2026-11-21").acquire()
    try:
        held = stored(gcs)
        assert held["owner"] == lock.owner and held["host"] == socket.gethostname()
        assert held["what"] == "reco run demo 2026-11-21" and held["expires_at"] > time.time()
        assert RunLock(URL).holder() == held
        assert gcs.object(GCS_BUCKET, NAME).content_type == "application/json"
    finally:
        lock.release()
    assert gcs.object(GCS_BUCKET, NAME) is None
    assert RunLock(URL).holder() is None


def test_second_run_of_a_date_is_refused_and_other_dates_run_side_by_side(gcs):
    first = RunLock(URL).acquire()
    try:
        with pytest.raises(AlreadyRunningError) as e:
            RunLock(URL).acquire(timeout_s=0)
        assert e.value.exit_code == EXIT_LOCKED
        assert URL in str(e.value) and f"pid {first.info['pid']} on {socket.gethostname()}" in str(e.value)
        other_date = RunLock(run_lock_url(ROOT, "demo", date(2026, 11, 20))).acquire()
        other_pipeline = RunLock(run_lock_url(ROOT, "creators", D)).acquire()
        other_date.release()
        other_pipeline.release()
        assert stored(gcs)["owner"] == first.owner  # untouched by the others
    finally:
        first.release()
    RunLock(URL).acquire().release()  # free again


def test_a_waiting_run_gets_the_lock_once_it_is_released(gcs):
    first = RunLock(URL).acquire()
    second = RunLock(URL)
    threading.Timer(0.3, first.release).start()
    second.acquire(timeout_s=60, poll_s=0.05)
    try:
        assert stored(gcs)["owner"] == second.owner
    finally:
        second.release()


def test_a_waiting_run_gives_up_at_its_timeout(gcs):
    first = RunLock(URL).acquire()
    try:
        with pytest.raises(AlreadyRunningError):
            RunLock(URL).acquire(timeout_s=0.3, poll_s=0.05)
        assert stored(gcs)["owner"] == first.owner
    finally:
        first.release()


def test_reco_run_of_a_date_running_in_the_cloud_exits_75(gcs, reco_home, capsys):
    held = RunLock(URL).acquire()
    try:
        code = main(["run", "--env", "dev", "--pipeline", "demo", "--date", "2026-11-21"])
        err = capsys.readouterr().err
        assert code == EXIT_LOCKED and "already running" in err and URL in err
    finally:
        held.release()


def test_expired_lock_of_a_crashed_holder_is_taken_over(gcs):
    stale = someone_elses_lock(gcs, expires_at=time.time() - 1)
    lock = RunLock(URL).acquire(timeout_s=0)
    try:
        assert stored(gcs)["owner"] == lock.owner
        assert gcs.object(GCS_BUCKET, NAME).generation != stale
    finally:
        lock.release()


def test_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(gcs):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    someone_elses_lock(gcs, host=socket.gethostname(), pid=int(dead.stdout))
    RunLock(URL).acquire(timeout_s=0).release()


def test_live_lock_of_another_host_is_respected(gcs):
    generation = someone_elses_lock(gcs)
    with pytest.raises(AlreadyRunningError) as e:
        RunLock(URL).acquire(timeout_s=0)
    assert "on elsewhere" in str(e.value)
    assert gcs.object(GCS_BUCKET, NAME).generation == generation


def test_of_two_runs_taking_over_one_expired_lock_only_one_gets_it(gcs):
    """B judges the lock stale; before B's delete reaches the server, C takes the lock over completely."""
    someone_elses_lock(gcs, expires_at=time.time() - 1)
    winner = RunLock(URL)
    gcs.before("DELETE", lambda: winner.acquire(timeout_s=0))
    with pytest.raises(AlreadyRunningError):
        RunLock(URL).acquire(timeout_s=0)  # its delete carries the stale generation: 412, C's lock stays
    try:
        assert winner.info and stored(gcs)["owner"] == winner.owner
    finally:
        winner.release()


def test_release_never_deletes_a_lock_someone_else_took_over(gcs):
    lock = RunLock(URL).acquire()  # default ttl: no heartbeat runs during the test
    theirs = someone_elses_lock(gcs)  # as if ours had expired and another run had taken it over
    lock.release()
    assert gcs.object(GCS_BUCKET, NAME).generation == theirs and stored(gcs)["owner"] == "other"


def test_heartbeat_renews_the_lock_and_stops_when_it_was_taken_over(gcs):
    lock = RunLock(URL, ttl_s=0.6).acquire()
    try:
        first = stored(gcs)["expires_at"]
        eventually(lambda: stored(gcs)["expires_at"] > first, "a renewal")
        theirs = someone_elses_lock(gcs)
        eventually(lambda: lock.lost, "noticing the lock was taken over")
        assert gcs.object(GCS_BUCKET, NAME).generation == theirs  # the renewal did not overwrite it
    finally:
        lock.release()
    assert stored(gcs)["owner"] == "other"


def test_transient_503_on_the_create_is_retried(gcs, fast_retries):
    gcs.fail("POST", 503)
    lock = RunLock(URL).acquire(timeout_s=0)
    try:
        assert stored(gcs)["owner"] == lock.owner and len(gcs.received("POST")) == 2
        assert fast_retries  # the client backed off before trying again
    finally:
        lock.release()


def test_lost_answer_to_the_create_still_gives_the_lock(gcs, fast_retries):
    """The upload was done but its answer lost: the client's retry gets 412 from our own object."""
    gcs.drop_response("POST")
    lock = RunLock(URL).acquire(timeout_s=0)
    try:
        assert stored(gcs)["owner"] == lock.owner and gcs.pending_faults() == 0
    finally:
        lock.release()
    assert gcs.object(GCS_BUCKET, NAME) is None


def test_lost_answer_to_a_renewal_keeps_the_lock(gcs, fast_retries):
    lock = RunLock(URL, ttl_s=0.6).acquire()
    try:
        gcs.drop_response("POST")
        eventually(lambda: gcs.pending_faults() == 0, "the renewal whose answer is lost")
        renewed = stored(gcs)["expires_at"]
        eventually(lambda: stored(gcs)["expires_at"] > renewed, "a renewal after the lost answer")
        assert not lock.lost and stored(gcs)["owner"] == lock.owner
    finally:
        lock.release()
    assert gcs.object(GCS_BUCKET, NAME) is None


def test_heartbeat_survives_a_refused_renewal(gcs):
    lock = RunLock(URL, ttl_s=0.6).acquire()
    try:
        gcs.fail("POST", 403)
        eventually(lambda: gcs.pending_faults() == 0, "the refused renewal")
        renewed = stored(gcs)["expires_at"]
        eventually(lambda: stored(gcs)["expires_at"] > renewed, "a renewal after the refused one")
        assert not lock.lost
    finally:
        lock.release()


def test_permission_denied_is_a_clear_error(gcs, reco_home, capsys):
    gcs.deny("storage.objects.create")
    with pytest.raises(LockStorageError) as e:
        RunLock(URL).acquire(timeout_s=0)
    message = str(e.value)
    assert e.value.exit_code == EXIT_FAILURE and URL in message
    assert "403 forbidden" in message and "storage.objects.create" in message
    code = main(["run", "--env", "dev", "--pipeline", "demo", "--date", "2026-11-21"])
    err = capsys.readouterr().err
    assert code == EXIT_FAILURE and "reco: error: could not create the run lock" in err
    assert "Traceback" not in err and "unexpected" not in err


def test_missing_bucket_is_a_clear_error(gcs):
    url = run_lock_url("gs://no-such-bucket/artifacts", "demo", D)
    with pytest.raises(LockStorageError) as e:
        RunLock(url).acquire(timeout_s=0)
    assert url in str(e.value) and "404" in str(e.value) and "bucket" in str(e.value)
