"""Run one child process and measure it: wall time, CPU time and peak memory (RSS of the child and its
descendants)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class Measured:
    cmd: list[str]
    returncode: int | None
    wall_s: float
    peak_rss_mb: float  # max over time of the summed RSS of the process tree (polled every poll_s)
    hwm_mb: float  # the child's own VmHWM (its peak RSS since exec, read until it exits)
    # user + system CPU seconds of the child, all its threads and the descendants it waited for (wait4's
    # rusage): the core-seconds of the work, which other jobs on a shared machine do not inflate as they do wall
    cpu_s: float = 0.0
    timed_out: bool = False
    stdout: str = ""
    stderr_tail: str = ""
    stderr: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def peak_mb(self) -> float:
        return max(self.peak_rss_mb, self.hwm_mb)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def reco_cmd() -> list[str]:
    """The reco CLI of this interpreter's environment, as a child command."""
    exe = Path(sys.executable).parent / "reco"
    return (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "import sys; from batch.cli import main; sys.exit(main())"]
    )


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(
    cmd: list[str],
    *,
    env: dict | None = None,
    timeout: float | None = None,
    poll_s: float = 0.05,
    cwd: str | None = None,
) -> Measured:
    """Start ``cmd`` (one child per measurement); poll its tree's RSS and the child's VmHWM until it exits."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [
        threading.Thread(target=lambda s=s, buf=buf: buf.append(s.read()), daemon=True)
        for s, buf in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))
    ]
    for t in readers:
        t.start()
    ps = psutil.Process(proc.pid)
    peak = 0
    hwm = 0
    timed_out = False
    status = None
    usage = None
    while True:
        # the child is reaped only below, so /proc/<pid> stays readable (as a zombie, without VmHWM) until then
        hwm = max(hwm, _hwm_bytes(proc.pid))
        peak = max(peak, _tree_rss(ps))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if timeout is not None and time.perf_counter() - started > timeout:
            timed_out = True
            _kill_tree(ps)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(poll_s)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join(timeout=30)
    return Measured(
        cmd=cmd,
        returncode=proc.returncode,
        wall_s=wall,
        peak_rss_mb=peak / 2**20,
        hwm_mb=hwm / 2**20,
        cpu_s=usage.ru_utime + usage.ru_stime if usage is not None else 0.0,
        timed_out=timed_out,
        stdout="".join(out_chunks),
        stderr_tail="".join(err_chunks)[-4000:],
        stderr="".join(err_chunks),
    )


def _hwm_bytes(pid: int) -> int:
    """VmHWM of a live process. Not ru_maxrss: Linux carries the parent's high-water mark into a forked child
    across exec, so wait4's ru_maxrss would report this (large) benchmark process for small children."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _kill_tree(ps: psutil.Process) -> None:
    """End the child we started and its descendants (e.g. Spark's JVM), by pid."""
    try:
        procs = [*ps.children(recursive=True), ps]
    except psutil.Error:
        procs = [ps]
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
