"""Errors the platform reports to people, and the exit codes that tell Kubernetes and Digdag what kind they are.

Exit codes are part of the contract with the Job manifests: the pod failure policy fails a Job at once (no retry)
on EXIT_BAD_INPUT and EXIT_CHECK_FAILED, because re-running the same input gives the same answer.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # anything unexpected: worth a retry (network, preemption, a bug that may be transient)
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_CHECK_FAILED = 3  # a publish check or quality gate refused the output; the previous publish stays
EXIT_BAD_INPUT = 65  # EX_DATAERR: bad config, bad data, missing or corrupt upstream artifact
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run of the same pipeline and date (or the warehouse) holds the lock
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (`reco show ... | head`); not an error


class RecoError(Exception):
    """Base class: a message meant for a person, and the exit code the CLI uses for it."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:  # the one line an on-call engineer reads
        base = super().__str__()
        return f"{base} (hint: {self.hint})" if self.hint else base


class ConfigError(RecoError):
    """Invalid pipeline or environment config, or an invalid --set override; names the file and field."""

    exit_code = EXIT_BAD_INPUT


class InputDataError(RecoError):
    """Input data cannot be used: a malformed import file, no events in the window."""

    exit_code = EXIT_BAD_INPUT


class NoEventsError(InputDataError):
    pass


class MissingTableError(InputDataError):
    """A source table the pipeline reads does not exist (a fresh RECO_HOME, a typo in source.events_table)."""

    def __init__(self, table: str, *, where: str, pipeline: str | None = None):
        self.table = table
        self.where = where
        super().__init__(f"table {table!r} does not exist in {where}", hint=self._hint(pipeline))

    @staticmethod
    def _hint(pipeline: str | None) -> str:
        p = pipeline or "PIPELINE"
        return (
            f"load data first: reco data generate --pipeline {p} "
            f"(synthetic) or reco data import-movielens ratings.csv --pipeline {p}"
        )

    def for_pipeline(self, pipeline: str) -> MissingTableError:
        """The same error with the hint naming the pipeline the command was given."""
        self.hint = self._hint(pipeline)
        return self


class WarehouseError(RecoError):
    """The warehouse itself cannot be used: a read-only, corrupt or unreadable DuckDB file; names the path."""

    exit_code = EXIT_BAD_INPUT


class ArtifactError(RecoError):
    """An earlier step's artifact is missing or corrupt; names the path and the step to rerun."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, path: str, step: str, rerun: str | None = None):
        hint = f"rerun step '{step}'" + (f": {rerun}" if rerun else "")
        super().__init__(f"{message}: {path}", hint=hint)
        self.path = path
        self.step = step


class MissingArtifactError(ArtifactError):
    pass


class CorruptArtifactError(ArtifactError):
    pass


class LockedError(RecoError):
    """Someone else holds a lock this command needs; trying again later can succeed."""

    exit_code = EXIT_LOCKED


class AlreadyRunningError(LockedError):
    """Another run of the same pipeline and session date holds the run lock."""


class WarehouseLockedError(LockedError):
    """Another process kept the warehouse file locked for longer than the lock timeout."""


class LockStorageError(RecoError):
    """A lock object could not be read or written (Cloud Storage answered an error); names the lock and the
    answer. Exit 1: a retry can help when the storage was unavailable."""


class CheckFailedError(RecoError):
    """A check refused to publish; the previous publish stays latest."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, message: str, *, failures: list[str] | None = None):
        super().__init__(message)
        self.failures = failures or []
