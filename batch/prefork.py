"""Run `reco ARGS` in a fork of this process instead of a fresh interpreter.

A `reco` process spends ~1.3 s importing the step graph and the data stack (pandas, DuckDB, implicit) before it
does anything. The local runners start many short `reco` processes (the Digdag local runner one `reco submit`
per task, the local Job runner one `reco step` per Job or shard), and on demo-sized data that start-up was most
of `make demo`'s time. A process that has imported the graph once can fork a child that runs the same command
with the same arguments, environment, working directory, output and exit code, in milliseconds (the pre-fork
model of gunicorn's ``preload_app``). Fresh interpreters are what a container does; GKE pods always do.

Forking is only safe from a process that has not run model code yet: OpenMP (implicit's ALS) keeps a thread
pool that a forked child cannot use (it waits forever on threads that do not exist there). So by default
(``RECO_LOCAL_SPAWN`` unset) only a `reco` command-line process that has run no step forks: the launchers
(`reco demo`, `reco digdag run`, `reco submit`), which only start other commands. A library caller (a test, the
benchmark) or a process that ran a step in-process starts fresh interpreters. ``RECO_LOCAL_SPAWN=fork`` forces
forking (tests of the fork path), ``exec`` forbids it.

The child is made safe to run after a fork: it resets the signal handlers its parent installed, gets new
stdout/stderr objects on its own pipes (the parent's threads may hold the old ones' locks), and never returns
into the parent's code (``os._exit``). Logging and the import lock are re-initialised by CPython after a fork.
"""

from __future__ import annotations

import importlib
import os
import shlex
import signal
import sys
import traceback
from typing import NoReturn

from batch.cli import COMMANDS, invoked_command, main
from batch.errors import ConfigError

SPAWN_ENV = "RECO_LOCAL_SPAWN"  # auto (default) | fork | exec
SHELL_SYNTAX = set("|&;<>()$`\\\"'*?[]#~{}\n")  # a line with any of these is the shell's to interpret


_ran_model_code = False


def mark_ran_model_code() -> None:
    """This process ran a step (batch.execute): from now on it starts fresh interpreters, never forks."""
    global _ran_model_code
    _ran_model_code = True


def spawn_mode() -> str:
    """fork or exec: how this process starts the `reco` commands it runs (see the module docstring)."""
    mode = (os.environ.get(SPAWN_ENV) or "auto").strip().lower()
    if mode not in ("auto", "fork", "exec"):
        raise ConfigError(f"${SPAWN_ENV}: {mode!r} is not fork, exec or auto")
    if not hasattr(os, "fork"):
        return "exec"
    if mode == "auto":
        launcher = os.path.basename(sys.argv[0] if sys.argv else "") == "reco"
        return "fork" if launcher and not _ran_model_code else "exec"
    return mode


def reco_args(command: str) -> list[str] | None:
    """The arguments of a shell command line that is nothing but `reco ARGS` (no shell syntax to interpret),
    else None: those can be forked; anything else goes to /bin/sh."""
    if any(ch in SHELL_SYNTAX for ch in command):
        return None
    words = shlex.split(command)
    return words[1:] if words[:1] == ["reco"] and len(words) > 1 else None


def preload(args: list[str]) -> None:
    """Import the module of the command the children will run, once here rather than in each child."""
    command = invoked_command(args)
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command][0])


class ForkedReco:
    """`reco ARGS` running in a fork of this process; ``stdout``/``stderr`` are the read ends of its pipes
    (``merge_stderr``: one pipe for both, as ``stderr=STDOUT``). ``poll``/``wait``/``kill`` as subprocess.Popen:
    the return code is -N when signal N ended it."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        *,
        cwd: str | None = None,
        new_session: bool = False,
        merge_stderr: bool = False,
    ):
        self.args = args
        self.returncode: int | None = None
        out_r, out_w = os.pipe()
        err_r, err_w = (out_r, out_w) if merge_stderr else os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            os.close(out_r)
            if not merge_stderr:
                os.close(err_r)
            _run_child(args, env, out_w, err_w, cwd=cwd, new_session=new_session)
        os.close(out_w)
        if not merge_stderr:
            os.close(err_w)
        self.stdout = open(out_r, encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
        self.stderr = None if merge_stderr else open(err_r, encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _run_child(
    args: list[str], env: dict[str, str], out_fd: int, err_fd: int, *, cwd: str | None, new_session: bool
) -> NoReturn:
    code = 1
    try:
        if new_session:
            os.setsid()  # its own process group, as start_new_session=True: a stop reaches all it starts
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)  # the parent's handlers are for the parent
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in {out_fd, err_fd}:
            os.close(fd)
        sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        if cwd:
            os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["reco", *args]
        code = main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe must not change the exit code
                pass
        os._exit(code & 0xFF if isinstance(code, int) else 1)
