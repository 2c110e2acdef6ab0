"""Output for people and machines: progress bars only in a terminal, periodic log lines elsewhere, --quiet."""

from __future__ import annotations

import io
import json
import logging

import pytest

from batch.logs import setup_logging
from batch.progress import progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def json_stderr(monkeypatch):
    """A non-terminal stderr (set in the test body: pytest swaps sys.stderr between phases)."""
    err = io.StringIO()
    monkeypatch.delenv("RECO_LOG_FORMAT", raising=False)
    yield lambda: monkeypatch.setattr("sys.stderr", err) or err
    logging.getLogger().handlers[:] = []


def test_off_a_tty_logs_are_json_and_progress_is_periodic_lines(json_stderr):
    err = json_stderr()
    setup_logging("info")
    for _ in progress(range(5), desc="related items", unit="batch", interval_s=0):
        pass
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    assert lines and all(rec["message"] == "progress" for rec in lines)  # no raw bar characters
    assert lines[-1]["final"] is True and lines[-1]["done"] == 5 and lines[-1]["percent"] == 100.0
    assert lines[0]["task"] == "related items" and lines[0]["unit"] == "batch"


def test_tqdm_call_shape_with_total_and_update(json_stderr):
    err = json_stderr()
    setup_logging("INFO")
    with progress(total=10, unit="user", desc="candidates", interval_s=3600) as bar:
        bar.update(4)
        bar.update(6)
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    assert len(lines) == 1 and lines[0]["done"] == 10 and lines[0]["total"] == 10  # only the final line


def test_quiet_and_disable_show_nothing(json_stderr):
    err = json_stderr()
    setup_logging("info", quiet=True)
    assert progress(range(3)).mode == "off"
    list(progress(range(3), interval_s=0))
    setup_logging("info")
    list(progress(range(3), disable=True, interval_s=0))
    assert err.getvalue() == ""


def test_in_a_terminal_a_bar_and_readable_logs(monkeypatch):
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    monkeypatch.delenv("RECO_LOG_FORMAT", raising=False)
    try:
        setup_logging("info")
        bar = progress(total=3, desc="work")
        assert bar.mode == "bar"
        logging.getLogger("reco").info("a line while the bar is drawn")
        bar.update(3)
        bar.close()
        text = tty.getvalue()
        assert "a line while the bar is drawn" in text and "INFO" in text and "{" not in text
        assert "3/3" in text
    finally:
        logging.getLogger().handlers[:] = []
