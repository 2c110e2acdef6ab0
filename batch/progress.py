"""Progress of long loops: a bar in a terminal, periodic structured log lines anywhere else.

``progress`` has tqdm's call shape, so a step swaps ``tqdm(...)`` for ``progress(...)`` without other changes::

    for batch in progress(batches, desc="related items", unit="batch"):
        ...
    with progress(total=n_users, unit="user", desc="candidates 0/2") as bar:
        bar.update(len(block))

* stderr is a terminal: a tqdm bar (log lines are printed above it, see batch/logs.py).
* otherwise (a container, a pipe, a file): no bar; an INFO log line ``progress`` every ``interval_s`` seconds
  (default 30, ``$RECO_PROGRESS_INTERVAL_S``) and one when the loop ends, with the fields task, done, total,
  unit, percent, rate_per_s, elapsed_s and eta_s, in whatever format the log uses (JSON lines off a terminal).
* ``disable=True``, or logging above INFO (``reco --quiet``): nothing at all.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

log = logging.getLogger("reco.progress")

DEFAULT_INTERVAL_S = 30.0


def _interval() -> float:
    try:
        return float(os.environ.get("RECO_PROGRESS_INTERVAL_S", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _stderr_is_tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


class progress:  # noqa: N801 - named like the tqdm it stands in for
    """tqdm's interface (iterable, total, desc, unit, disable; update, close, context manager, iteration)."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: float | None = None,
        desc: str | None = None,
        unit: str = "it",
        disable: bool | None = None,
        interval_s: float | None = None,
        **tqdm_kwargs,
    ):
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total = total
        self.desc = desc or ""
        self.unit = unit
        self.n = 0
        self.interval_s = _interval() if interval_s is None else interval_s
        self._start = self._last = time.monotonic()
        self._closed = False
        enabled = disable is not True and log.isEnabledFor(logging.INFO)
        self._bar = None
        self._log_lines = False
        if enabled and _stderr_is_tty():
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, **tqdm_kwargs)
        elif enabled:
            self._log_lines = True

    @property
    def mode(self) -> str:
        """ "bar", "log" or "off": what this progress shows."""
        return "bar" if self._bar is not None else "log" if self._log_lines else "off"

    def update(self, n: float = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._log_lines:
            now = time.monotonic()
            if now - self._last >= self.interval_s:
                self._last = now
                self._emit()

    def _emit(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self._start
        rate = self.n / elapsed if elapsed > 0 else None
        fields = {
            "task": self.desc,
            "done": self.n,
            "total": self.total,
            "unit": self.unit,
            "elapsed_s": round(elapsed, 1),
            "rate_per_s": round(rate, 2) if rate else None,
            "final": final,
        }
        if self.total:
            fields["percent"] = round(100.0 * self.n / self.total, 1)
            if rate and not final:
                fields["eta_s"] = round(max(self.total - self.n, 0) / rate, 1)
        log.info("progress", extra=fields)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._log_lines:
            self._emit(final=True)

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("progress() was given no iterable; use update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
