"""Malformed MovieLens imports: refused with the line (exit 65), streamed, nothing written on refusal."""

from __future__ import annotations

import gzip
import json
import time

import duckdb
import pytest

from batch.cli import main

HEADER = b"userId,movieId,rating,timestamp\n"
GOOD = b"1,10,4.0,1700000000\n2,10,2.0,1700000100\n"


def _import(capsys, path):
    code = main(["data", "import-movielens", str(path), "--pipeline", "demo"])
    out, err = capsys.readouterr()
    return code, out, err


def _events(reco_home) -> int:
    db = reco_home / "warehouse.duckdb"
    if not db.exists():
        return 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT COUNT(*) FROM demo_events").fetchone()[0]
    except duckdb.CatalogException:
        return 0
    finally:
        con.close()


@pytest.mark.parametrize(
    "body, says",
    [
        (HEADER + b"1,10,4.0,1700000000\n1,1\xff0,4.0,1700000000\n", ":3: not UTF-8 (byte 0xff at column 4)"),
        (HEADER + b"1,10,4.0,1700000000\r1,11,4.0,1700000000\n", ":2: bare carriage return"),
        (HEADER + b"1,10,4.0,-5\n", ":2: timestamp -5 is negative"),
        (HEADER + b"1,10,4.0,1700000000000\n", ":2: timestamp 1700000000000 looks like milliseconds"),
        (HEADER + b"1,10,4.0,99999999999999999999\n", ":2: timestamp 99999999999999999999 is after 2999"),
        (b"\xff\xfeu\x00s\x00", ":1: the file is UTF-16"),
    ],
)
def test_bad_bytes_and_implausible_timestamps_are_refused_with_the_line(
    reco_home, tmp_path, capsys, body, says
):
    path = tmp_path / "ratings.csv"
    path.write_bytes(body)
    code, _, err = _import(capsys, path)
    assert code == 65 and f"{path}{says}" in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert _events(reco_home) == 0  # nothing half-imported


def test_gzip_bom_and_crlf_are_accepted(reco_home, tmp_path, capsys):
    path = tmp_path / "ratings.csv.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + (HEADER + GOOD).replace(b"\n", b"\r\n")))
    code, out, err = _import(capsys, path)
    assert code == 0, err
    assert json.loads(out)["events"] == 2 and _events(reco_home) == 2


def test_truncated_gzip_names_the_line(reco_home, tmp_path, capsys):
    path = tmp_path / "ratings.csv.gz"
    path.write_bytes(gzip.compress(HEADER + GOOD * 1000)[:-40])
    code, _, err = _import(capsys, path)
    assert code == 65 and f"{path}:" in err and "gzip" in err


def test_huge_field_fails_fast_with_the_line(reco_home, tmp_path, capsys):
    path = tmp_path / "ratings.csv"
    with open(path, "wb") as f:
        f.write(HEADER + GOOD)
        f.write(b"3,10,4.0,1" + b"7" * (64 * 1024 * 1024) + b"\n")  # a 64 MiB field on line 4
    started = time.perf_counter()
    code, _, err = _import(capsys, path)
    assert code == 65 and f"{path}:4: line longer than" in err
    assert time.perf_counter() - started < 5  # stops at the limit instead of reading the field
