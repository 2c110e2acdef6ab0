"""Logging: JSON lines in containers (and whenever RECO_LOG_FORMAT=json), readable lines in a terminal.

The format follows stderr: a terminal gets readable lines (and progress bars, batch/progress.py), anything else
(a pipe, a file, a container log) gets one JSON object per line. ``RECO_LOG_FORMAT=text|json`` forces one.
While a progress bar is drawn in a terminal, log lines are written above it (tqdm.write) instead of through it.

Secrets never reach a log line: every record passes through a filter that masks webhook URLs, bearer tokens and
the values of environment variables that name secrets.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from pythonjsonlogger.json import JsonFormatter
from tqdm import tqdm

_SECRET_PATTERNS = [
    re.compile(r"https://hooks\.slack\.com/[^\s\"']+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+"),
    re.compile(r"(?i)((?:token|password|secret|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
]
_SECRET_ENV = re.compile(r"(?i)(TOKEN|SECRET|PASSWORD|WEBHOOK)")
_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """Mask anything that looks like a secret, and the values of secret-named environment variables."""
    for name, value in os.environ.items():
        if value and len(value) >= 8 and _SECRET_ENV.search(name):
            text = text.replace(value, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in the message, in ``extra=`` fields and in the formatted traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STD and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class ReadableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STD)
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        return f"{base}  {extra}" if extra else base


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (it may be replaced after setup)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(tqdm, "_instances", None) and _isatty(sys.stderr):  # a bar is on screen: print above it
            try:
                tqdm.write(self.format(record), file=sys.stderr)
            except Exception:
                self.handleError(record)
            return
        super().emit(record)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def log_level(value: str) -> str:
    """``debug``, ``Info``, ``WARNING``... -> the level name logging knows; ValueError names the choices."""
    name = str(value).strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LOG_LEVELS:
        raise ValueError(f"unknown log level {value!r}; choose one of {', '.join(LOG_LEVELS)} (any case)")
    return name


def setup_logging(level: str | None = None, *, quiet: bool = False) -> None:
    """Root logging for a command. ``quiet``: warnings and errors only (no progress either)."""
    level = log_level(level or os.environ.get("RECO_LOG_LEVEL") or "INFO")
    if quiet and logging.getLevelName(level) < logging.WARNING:
        level = "WARNING"
    fmt = os.environ.get("RECO_LOG_FORMAT") or ("text" if _isatty(sys.stderr) else "json")
    handler = _CurrentStderrHandler()
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "severity"}
        )
        if fmt == "json"
        else ReadableFormatter()
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "google", "implicit"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
