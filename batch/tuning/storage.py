"""Where studies live, and the lock that keeps the trial budget across workers.

- Embedded default: Optuna's journal storage on a local file (``$RECO_HOME/tuning/<pipeline>.journal``), which
  several processes on one machine append to safely (SQLite is not safe under parallel writers).
- Cloud: PostgreSQL on the Cloud SQL instance through the Cloud SQL Auth Proxy sidecar with IAM database
  authentication: ``postgresql+psycopg://<iam user>@127.0.0.1:5432/<database>``, no password anywhere.

The URL comes from ``--storage``, else ``$RECO_TUNING_STORAGE`` (the worker Job sets it), else the pipeline's
``tuning.storage``, else the journal file. On PostgreSQL, heartbeats (``heartbeat_interval`` / ``grace_period``) mark a
dead worker's trial FAIL and ``RetryHeartbeatStaleTrialCallback(max_retry=1)`` queues it once more. Optuna's journal
storage has no heartbeat; local workers record their process id with each trial and a dead process's trials are
failed and retried the same way (workers.py).

The budget lock serialises "count the trials, then start one" across workers: a PostgreSQL advisory lock on RDB
storage, an ``flock`` beside the journal file otherwise. Both are released by the operating system or the server
when the holder dies, so a killed worker never wedges the others.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from batch.config import PipelineConfig, reco_home
from batch.errors import RecoError

STORAGE_ENV = "RECO_TUNING_STORAGE"
with warnings.catch_warnings():  # experimental since Optuna 4.9, where it replaced RetryFailedTrialCallback
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    RETRY_FAILED = RetryHeartbeatStaleTrialCallback(max_retry=1)  # a dead worker's trial is run once more


class StorageUnreachableError(RecoError):
    """The study database cannot be reached: the message names the URL without its credentials."""


def redact_url(url: str) -> str:
    """The URL without a password (user names stay: an IAM user is not a secret, and it says who connected)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def storage_url(cfg: PipelineConfig, explicit: str | None = None) -> str:
    url = explicit or os.environ.get(STORAGE_ENV) or cfg.tuning.storage
    if url:
        return url
    path = reco_home() / "tuning" / f"{cfg.name}.journal"
    return f"journal:///{path}"


def _journal_path(url: str) -> Path | None:
    if url.startswith("journal://"):
        return Path(url.removeprefix("journal://")).resolve()
    return None


def open_storage(url: str, cfg: PipelineConfig) -> optuna.storages.BaseStorage:
    """The Optuna storage of a URL with heartbeats and retry-once of failed trials."""
    retry = RETRY_FAILED
    journal = _journal_path(url)
    if journal is not None:
        journal.parent.mkdir(parents=True, exist_ok=True)
        return _journal_storage(journal, cfg, retry)
    if url.startswith("sqlite"):
        raise RecoError(
            f"{redact_url(url)}: SQLite is not safe for parallel workers",
            hint="use the default journal file, or PostgreSQL",
        )
    try:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=cfg.tuning.heartbeat_interval_s,
            grace_period=cfg.tuning.grace_period_s,
            heartbeat_stale_trial_callback=retry,
            engine_kwargs={"pool_pre_ping": True, "connect_args": _connect_args(url)},
        )
    except Exception as e:  # sqlalchemy / psycopg: their messages may quote the URL
        raise StorageUnreachableError(
            f"cannot open the study storage {redact_url(url)}: {type(e).__name__}: "
            f"{redact_url(_first_line(e))}",
            hint="is the database (or the Cloud SQL Auth Proxy sidecar) up?",
        ) from None


def _connect_args(url: str) -> dict:
    return {"connect_timeout": 10} if url.startswith("postgresql") else {}


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def _journal_storage(path: Path, cfg: PipelineConfig, retry) -> JournalStorage:
    # Optuna's journal storage has no heartbeat: a dead local worker's trial is found by its process id instead
    # (batch/tuning/workers.py fail_dead_local_trials), and retried with the same callback.
    return JournalStorage(JournalFileBackend(str(path)))


def is_journal(url: str) -> bool:
    return _journal_path(url) is not None


class BudgetLock:
    """Held while a worker counts the study's trials and starts one (see the module docstring).

    ``acquire``/``release`` rather than a ``with`` block: the worker takes it before Optuna asks for a trial and
    lets go once that trial is RUNNING (inside the objective). ``release`` is idempotent."""

    def __init__(self, url: str, study_name: str):
        self._held = False
        journal = _journal_path(url)
        self._file = None
        self._conn = None
        if journal is not None:
            self._file = open(journal.with_name(f"{journal.name}.{study_name}.lock"), "a+")  # noqa: SIM115
            return
        self._key = int.from_bytes(
            hashlib.sha256(f"reco-tune:{study_name}".encode()).digest()[:8], "big", signed=True
        )
        self._engine = sqlalchemy.create_engine(
            url, poolclass=sqlalchemy.pool.NullPool, connect_args=_connect_args(url)
        )
        try:
            self._conn = self._engine.connect()
        except Exception as e:
            raise StorageUnreachableError(
                f"cannot connect to {redact_url(url)}: {type(e).__name__}: {redact_url(_first_line(e))}"
            ) from None
        self._conn.execution_options(isolation_level="AUTOCOMMIT")

    def acquire(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_EX)
        else:
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        else:
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})

    def close(self) -> None:
        self.release()
        if self._file is not None:
            self._file.close()
        if self._conn is not None:
            self._conn.close()
            self._engine.dispose()

    def __enter__(self) -> BudgetLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
