"""`reco ARGS` in a fork of this process (batch.prefork): which command lines qualify, and that a forked child
behaves like a process: its output, its exit code, its environment and working directory, a kill."""

from __future__ import annotations

import os
import signal

import pytest

from batch.prefork import ForkedReco, reco_args


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (
            "reco submit aggregate --pipeline demo --date 2026-11-21",
            ["submit", "aggregate", "--pipeline", "demo", "--date", "2026-11-21"],
        ),
        ("  reco   --version ", ["--version"]),
        ("reco", None),
        ("reco show summary | head", None),  # a pipe: the shell's job
        ("reco run --pipeline $P", None),
        ("FOO=1 reco run", None),
        ("echo reco", None),
        ("reco notify success; echo done", None),
    ],
)
def test_only_a_plain_reco_line_is_forked(line, args):
    assert reco_args(line) == args


def test_a_forked_reco_has_its_own_output_exit_code_environment_and_directory(tmp_path, reco_home):
    env = {**os.environ, "RECO_LOG_LEVEL": "bogus"}  # an environment the child must see, not the parent's
    child = ForkedReco(["--version"], env, cwd=str(tmp_path), merge_stderr=True)
    assert child.stdout.read().startswith("reco ")
    assert child.wait() == 0
    child = ForkedReco(["run", "--pipeline", "demo", "--date", "2026-11-21"], env)
    err = child.stderr.read()
    assert child.wait() == 2 and "RECO_LOG_LEVEL" in err  # the child's environment, judged by the child
    child.stdout.close()
    child.stderr.close()


def test_a_forked_reco_can_be_killed(reco_home):
    child = ForkedReco(["digdag", "run", "/dev/stdin"], dict(os.environ), new_session=True)
    child.kill()
    assert child.wait() == -signal.SIGKILL
    child.stdout.close()
    child.stderr.close()


def test_only_a_reco_launcher_that_ran_no_model_code_forks(monkeypatch):
    """A fork cannot use the OpenMP pool its parent started: library callers (this test process) and a process
    that ran a step start fresh interpreters unless told otherwise."""
    import sys

    from batch import prefork

    monkeypatch.delenv("RECO_LOCAL_SPAWN", raising=False)
    monkeypatch.setattr(prefork, "_ran_model_code", False)
    assert prefork.spawn_mode() == "exec"  # pytest is not the reco command line
    monkeypatch.setattr(sys, "argv", ["/venv/bin/reco", "submit", "train"])
    assert prefork.spawn_mode() == "fork"
    prefork.mark_ran_model_code()
    assert prefork.spawn_mode() == "exec"
    monkeypatch.setenv("RECO_LOCAL_SPAWN", "fork")
    assert prefork.spawn_mode() == "fork"  # forced, as the fork tests do
