from __future__ import annotations

import pytest


@pytest.fixture
def slack_out(monkeypatch):
    """Slack messages printed without a webhook, captured."""
    from batch.alerts import slack

    sent: list[dict] = []
    monkeypatch.setattr(slack.SlackNotifier, "send", lambda self, message: sent.append(message) or False)
    return sent
