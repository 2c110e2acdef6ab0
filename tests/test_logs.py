import json
import logging

from batch.logs import redact, setup_logging

HOOK = "https://hooks.slack.com/services/T000/B000/abcdefghijklmnop"


def test_redact_masks_webhooks_tokens_and_secret_env(monkeypatch):
    monkeypatch.setenv("DIGDAG_TOKEN", "s3cr3t-value-123")
    text = redact(f"posting to {HOOK} with Bearer abc.def.ghi token=xyz123 and s3cr3t-value-123")
    assert "hooks.slack.com/services" not in text and "abc.def.ghi" not in text
    assert "xyz123" not in text and "s3cr3t-value-123" not in text


def test_json_logs_never_carry_secrets_in_message_extras_or_tracebacks(capsys, monkeypatch):
    monkeypatch.setenv("RECO_LOG_FORMAT", "json")
    setup_logging("INFO")
    log = logging.getLogger("test")
    log.info("sending to %s", HOOK, extra={"url": HOOK, "pipeline": "demo"})
    try:
        raise RuntimeError(f"connection to {HOOK} refused")
    except RuntimeError:
        log.exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["pipeline"] == "demo" and lines[0]["severity"] == "INFO"
    assert all("abcdefghijklmnop" not in json.dumps(line) for line in lines)
    assert "RuntimeError" in json.dumps(lines[1])
