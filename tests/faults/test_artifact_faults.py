"""Corrupt and missing artifacts: the marker's sizes and checksums are verified; errors name path and command."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from batch.errors import EXIT_BAD_INPUT, CorruptArtifactError, MissingArtifactError
from batch.storage import MARKER, ArtifactStore

D = date(2026, 11, 21)


def _write_model(store):
    with store.writer("p", "model", D) as w:
        with w.open("model.npz") as f:
            np.savez(f, factors=np.arange(1000, dtype=np.float32))
        w.write_json("metrics.json", {"ndcg@10": 0.1})
        w.write_parquet("users.parquet", pa.table({"user_idx": list(range(100))}))
    return store.committed("p", "model", D, step="train")


def test_marker_records_size_and_sha256_of_what_was_stored(tmp_path):
    c = _write_model(ArtifactStore(str(tmp_path)))
    for name, entry in c.marker["files"].items():
        data = open(os.path.join(c.run_dir, name), "rb").read()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    with c.open("model.npz") as f:  # the npz written through the hashing writer loads
        assert np.load(f)["factors"][-1] == 999


def test_flipped_byte_in_model_is_corrupt_and_names_path_and_command(tmp_path):
    c = _write_model(ArtifactStore(str(tmp_path)))
    path = os.path.join(c.run_dir, "model.npz")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
    open(path, "wb").write(bytes(data))
    with pytest.raises(CorruptArtifactError) as e:
        c.open("model.npz")
    assert e.value.exit_code == EXIT_BAD_INPUT and path in str(e.value)
    assert "reco run --pipeline p --date 2026-11-21" in str(e.value)


@pytest.mark.parametrize("name", ["metrics.json", "users.parquet"])
def test_truncated_file_is_corrupt(tmp_path, name):
    c = _write_model(ArtifactStore(str(tmp_path)))
    path = os.path.join(c.run_dir, name)
    os.truncate(path, os.path.getsize(path) - 3)
    with pytest.raises(CorruptArtifactError, match="size is"):
        c.read_json(name) if name.endswith(".json") else c.read_parquet(name)


def test_big_file_is_size_checked_without_reading_it_whole(tmp_path, monkeypatch):
    monkeypatch.setattr("batch.storage.CHECKSUM_MAX_BYTES", 10)
    c = _write_model(ArtifactStore(str(tmp_path)))
    assert c.read_parquet("users.parquet").num_rows == 100  # streamed: not a BytesIO
    assert not isinstance(c.open("users.parquet"), io.BytesIO)
    path = os.path.join(c.run_dir, "users.parquet")
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(CorruptArtifactError, match="size is"):
        c.read_parquet("users.parquet")


def test_missing_file_behind_a_present_marker(tmp_path):
    c = _write_model(ArtifactStore(str(tmp_path)))
    os.remove(os.path.join(c.run_dir, "model.npz"))
    with pytest.raises(MissingArtifactError) as e:
        c.open("model.npz")
    assert e.value.exit_code == EXIT_BAD_INPUT and "reco run --pipeline p --date 2026-11-21" in str(e.value)


def test_old_markers_with_bare_sizes_still_read_and_check_size(tmp_path):
    store = ArtifactStore(str(tmp_path))
    c = _write_model(store)
    marker_path = os.path.join(c.url, MARKER)
    marker = json.load(open(marker_path))
    marker["files"] = {k: v["size"] for k, v in marker["files"].items()}
    json.dump(marker, open(marker_path, "w"))
    old = store.committed("p", "model", D, step="train")
    assert old.read_json("metrics.json") == {"ndcg@10": 0.1}
    os.truncate(os.path.join(old.run_dir, "metrics.json"), 2)
    with pytest.raises(CorruptArtifactError, match="size is 2 bytes"):
        old.read_json("metrics.json")


def test_verify_checks_every_file(tmp_path):
    c = _write_model(ArtifactStore(str(tmp_path)))
    c.verify()
    path = os.path.join(c.run_dir, "users.parquet")
    data = bytearray(open(path, "rb").read())
    data[10] ^= 0x01
    open(path, "wb").write(bytes(data))
    with pytest.raises(CorruptArtifactError, match="SHA-256"):
        c.verify()
