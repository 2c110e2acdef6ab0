"""Fixtures for the tuning tests: small aggregated data, the `reco tune` command line, a real PostgreSQL server."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from batch.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from tune_helpers import SESSION, SMALL  # noqa: E402


@pytest.fixture
def aggregated(small_data, reco_home):
    """The demo pipeline's synthetic traffic, aggregated for SESSION (what a study tunes on)."""
    assert main(["step", "aggregate", "--pipeline", "demo", "--date", SESSION]) == 0
    return reco_home


@pytest.fixture
def tune(aggregated, capsys):
    """Run `reco tune` for the demo pipeline; returns (exit code, parsed JSON report or None)."""
    import json

    def run(*extra: str, small: bool = True) -> tuple[int, dict | None]:
        capsys.readouterr()
        code = main(["tune", "--pipeline", "demo", "--date", SESSION, *(SMALL if small else []), *extra])
        out = capsys.readouterr().out
        try:
            return code, json.loads(out)
        except ValueError:
            return code, None

    return run


def _pg_bin() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").exists() and Path(d, "pg_ctl").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(os.path.realpath(found)).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server started for the test session (Debian's postgresql package); skipped without it."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="reco-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        shutil.chown(base, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()
    try:
        subprocess.run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "reco", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(base / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL could not start: {e}")
    try:
        yield f"postgresql+psycopg://reco@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        time.sleep(0.2)
        shutil.rmtree(base, ignore_errors=True)
