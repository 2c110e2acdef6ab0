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
