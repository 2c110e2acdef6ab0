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


class CheckFailedError(RecoError):
    """A check refused to publish; the previous publish stays latest."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, message: str, *, failures: list[str] | None = None):
        super().__init__(message)
        self.failures = failures or []
