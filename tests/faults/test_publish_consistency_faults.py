"""The publish and the rollback are one commit point: after a fault anywhere, the serving record, the promoted
model, the files they name and the warehouse's serving view still name one run (the old one, whole).

Faults: an exception at every boundary between two moves (batch.serving.failpoint), a filesystem that fails with
ENOSPC after N bytes (every write of the publish, the serving record's included), a DuckDB COMMIT that fails the
way a full disk does, and a lock held by another process (tests/rollback)."""

from __future__ import annotations

import errno
from datetime import date, timedelta

import duckdb
import fsspec
import pyarrow as pa
import pytest
from fsspec.implementations.local import LocalFileSystem

from batch import serving
from batch.cli import main
from batch.warehouse.duckdb import DuckDBWarehouse
from tests.rollback import helpers as h

D1, D2, D3 = (date(2026, 11, 17) + timedelta(days=i) for i in range(3))
BOUNDARIES = [
    "publish record written",
    "model record written",
    "warehouse partition loaded",
    "serving view pointed",
    "warehouse moved",
]


class Boom(Exception):
    pass


def _fail_at(monkeypatch, where: str):
    def fp(name):
        if name == where:
            raise Boom(where)

    monkeypatch.setattr(serving, "failpoint", fp)


@pytest.mark.parametrize("where", BOUNDARIES)
@pytest.mark.parametrize("same_date", [False, True], ids=["next-date", "rerun-of-date-in-service"])
def test_a_fault_between_publish_moves_leaves_the_old_state_whole(reco_home, monkeypatch, where, same_date):
    h.publish(D1, tag="old")
    _, _, store = h.setup()
    before = store.serving("demo")
    _fail_at(monkeypatch, where)
    with pytest.raises(Boom):
        h.publish(D1 if same_date else D2, tag="new")
    assert store.serving("demo") == before
    assert h.assert_consistent(store) == "old"
    assert h.partition_tags(D1) == {"old"}  # a rerun of the date in service put its partition back
    monkeypatch.setattr(serving, "failpoint", lambda name: None)
    assert h.publish(D2, tag="next").moved and h.assert_consistent(store) == "next"  # the retry goes through


@pytest.mark.parametrize("where", ["warehouse partition loaded", "serving view pointed", "warehouse moved"])
def test_a_fault_between_rollback_moves_leaves_the_old_state_whole(reco_home, monkeypatch, capsys, where):
    h.publish(D1, tag="good")
    h.publish(D2, tag="bad")
    _, _, store = h.setup()
    before = store.serving("demo")
    _fail_at(monkeypatch, where)
    assert main(["rollback", "--pipeline", "demo", "--to", str(D1)]) == 1
    assert "Boom" in capsys.readouterr().err
    assert store.serving("demo") == before and h.assert_consistent(store) == "bad"
    monkeypatch.setattr(serving, "failpoint", lambda name: None)
    assert main(["rollback", "--pipeline", "demo", "--to", str(D1)]) == 0
    assert h.assert_consistent(store) == "good"


class ENOSPCFileSystem(LocalFileSystem):
    """The local disk, with a budget: writes fail with ENOSPC once ``budget`` bytes have been written."""

    protocol = ("enospc",)
    root_marker = "/"
    budget = 10**12

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        self._spend(len(value), path)
        return super().pipe_file(path, value, **kwargs)

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode=mode, **kwargs)
        if "w" in mode or "a" in mode:
            raw_write = f.write

            def write(data, _raw=raw_write, _path=path):
                self._spend(len(data), _path)
                return _raw(data)

            f.write = write
        return f

    def _spend(self, n: int, path: str) -> None:
        if n > type(self).budget:
            type(self).budget = 0
            raise OSError(errno.ENOSPC, "No space left on device", path)
        type(self).budget -= n


@pytest.fixture
def enospc_store(reco_home, monkeypatch):
    """The store the publish writes through, on the budgeted filesystem (non-local: every write goes through
    it, the serving record's atomic write included)."""
    fsspec.register_implementation("enospc", ENOSPCFileSystem, clobber=True)
    original = h.setup

    def setup():
        env, cfg, store = original()
        store.fs = ENOSPCFileSystem(auto_mkdir=True)
        store.display = lambda path, _s=store: _s.resolve(path) if "://" not in path else path
        return env, cfg, store

    monkeypatch.setattr(h, "setup", setup)
    yield
    ENOSPCFileSystem.budget = 10**12


@pytest.mark.parametrize("budget", [0, 500, 1_500, 3_000, 6_000, 10**9])
def test_no_space_left_at_any_byte_of_a_publish_leaves_one_run_named(enospc_store, budget):
    h.publish(D1, tag="old")
    env, cfg, store = h.setup()
    before = store.serving("demo")
    run_id, export, model = h.make_export(store, D1, 5, "new")  # a rerun of the date in service, staged
    record, model_record = h.records(store, D1, run_id, export, model, "new")
    ENOSPCFileSystem.budget = budget  # from here on the disk fills up after `budget` bytes
    try:
        serving.publish(store, env, cfg, record, model_record)
        failed = False
    except OSError as e:
        assert e.errno == errno.ENOSPC
        failed = True
    ENOSPCFileSystem.budget = 10**12
    tag = h.assert_consistent(store)
    if failed:
        assert tag == "old" and store.serving("demo") == before and h.partition_tags(D1) == {"old"}
    else:
        assert tag == "new" and h.partition_tags(D1) == {"new"}
    assert failed == (budget < 3_000) or budget in (3_000, 6_000)  # the small budgets do fail mid-publish


def test_a_failed_duckdb_commit_reports_its_own_error_not_the_rollbacks(tmp_path):
    """ENOSPC while DuckDB commits ends the transaction; the ROLLBACK after it used to replace the real error
    with "cannot rollback - no transaction is active"."""
    wh = DuckDBWarehouse(str(tmp_path / "w.duckdb"))
    real = wh.con

    class FullDisk:
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, *args):
            if sql == "COMMIT":
                real.execute("ROLLBACK")  # DuckDB ends the transaction when its commit fails
                raise duckdb.IOException("Could not write file: No space left on device")
            return real.execute(sql, *args)

    wh.con = FullDisk()
    with pytest.raises(duckdb.IOException, match="No space left"):
        wh.write_table("t", pa.table({"a": [1]}), mode="replace")
    wh.con = real
    assert not wh.table_exists("t")
    wh.close()
