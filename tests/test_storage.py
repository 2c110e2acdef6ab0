import os
from datetime import date

import pyarrow as pa
import pytest

from batch.errors import CorruptArtifactError, MissingArtifactError
from batch.storage import MARKER, PUBLISH, ArtifactStore

D = date(2026, 11, 21)


def test_commit_marker_makes_a_partition_visible(tmp_path):
    store = ArtifactStore(str(tmp_path))
    assert not store.exists("p", "ds", D)
    with store.writer("p", "ds", D) as w:
        w.write_parquet("t.parquet", pa.table({"a": [1, 2]}))
        w.write_json("stats.json", {"n": 2})
        w.metadata["note"] = "x"
        # not visible until the block ends
        assert not store.exists("p", "ds", D)
    c = store.committed("p", "ds", D, step="make")
    assert c.read_parquet("t.parquet").column("a").to_pylist() == [1, 2]
    assert c.read_json("stats.json") == {"n": 2}
    assert c.metadata == {"note": "x"}


def test_failed_write_keeps_previous_partition_and_leaves_no_debris(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with store.writer("p", "ds", D) as w:
        w.write_json("v.json", 1)
    with pytest.raises(RuntimeError):
        with store.writer("p", "ds", D) as w:
            w.write_json("v.json", 2)
            raise RuntimeError("boom")
    assert store.committed("p", "ds", D, step="make").read_json("v.json") == 1
    runs = [n for n in os.listdir(store.partition_url("p", "ds", D)) if n.startswith("run=")]
    assert len(runs) == 1


def test_rerun_replaces_and_collects_old_runs(tmp_path):
    store = ArtifactStore(str(tmp_path))
    for v in (1, 2, 3):
        with store.writer("p", "ds", D) as w:
            w.write_json("v.json", v)
    assert store.committed("p", "ds", D, step="make").read_json("v.json") == 3
    runs = [n for n in os.listdir(store.partition_url("p", "ds", D)) if n.startswith("run=")]
    assert len(runs) == 1


def test_published_run_is_never_collected(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with store.writer("p", "export", D) as w:
        w.write_json("v.json", 1)
    first = w.run_dir
    store.write_record("p", PUBLISH, {"dt": D.isoformat(), "model_version": "m1", "run_dir": first})
    with store.writer("p", "export", D) as w:
        w.write_json("v.json", 2)
    assert os.path.isdir(first)


def test_missing_and_corrupt_artifacts_name_path_and_step(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(MissingArtifactError) as e:
        store.committed("p", "interactions", D, step="aggregate")
    assert "aggregate" in str(e.value) and str(tmp_path) in str(e.value)
    with store.writer("p", "interactions", D) as w:
        w.write_json("v.json", 1)
    marker = os.path.join(store.partition_url("p", "interactions", D), MARKER)
    with open(marker, "w") as f:
        f.write("{not json")
    with pytest.raises(CorruptArtifactError) as e:
        store.committed("p", "interactions", D, step="aggregate")
    assert marker in str(e.value) and "rerun step 'aggregate'" in str(e.value)


def test_corrupt_parquet_is_reported(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with store.writer("p", "ds", D) as w:
        w.write_bytes("t.parquet", b"definitely not parquet")
    with pytest.raises(CorruptArtifactError, match="Parquet"):
        store.committed("p", "ds", D, step="make").read_parquet("t.parquet")


def test_publish_records_are_kept_per_date_oldest_first(tmp_path):
    """What served when: one record per date (forward-only serving is batch.serving's, tested through the
    pipeline in tests/quality/test_gates.py and tests/rollback)."""
    store = ArtifactStore(str(tmp_path))
    for dt, version in (("2026-11-21", "b"), ("2026-11-01", "c"), ("2026-11-20", "a")):
        store.write_record("p", PUBLISH, {"dt": dt, "model_version": version, "run_dir": "x"})
    assert [r["dt"] for r in store.publish_records("p")] == ["2026-11-01", "2026-11-20", "2026-11-21"]
    assert store.latest("p") is None  # records alone put nothing in service
    assert store.previous_publish("p", date(2026, 11, 21))["dt"] == "2026-11-20"
