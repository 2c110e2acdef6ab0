"""The issue's own check: `reco run --pipeline demo --date D --set incremental.enabled=true` on two consecutive
dates publishes a full day, then an incremental day."""

from __future__ import annotations

import json
from datetime import timedelta

from batch.cli import main
from tests.conftest import SESSION

DAY1 = SESSION - timedelta(days=1)
ARGS = [
    "--set",
    "incremental.enabled=true",
    "--set",
    "model.params.iterations=2",
    "--set",
    "model.params.factors=8",
]


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_two_consecutive_runs_publish_a_full_then_an_incremental_day(small_data, reco_home, capsys):
    kinds = {}
    for dt in (DAY1, SESSION):
        code, out, err = _cli(capsys, "run", "--pipeline", "demo", "--date", str(dt), *ARGS)
        assert code == 0, err
        assert json.loads(out)["published"]["latest"]["dt"] == str(dt)
        code, out, err = _cli(capsys, "show", "summary", "--pipeline", "demo", "--date", str(dt))
        assert code == 0, err
        summary = json.loads(out)
        kinds[dt] = summary["incremental"]["kind"], summary["incremental"]["reason"]
        assert summary["events_read"]["mode"] == "partials"
    assert kinds[DAY1][0] == "full" and kinds[DAY1][1].startswith("first run")
    assert kinds[SESSION][0] == "incremental" and kinds[SESSION][1].startswith("warm start from demo-")
    # the second day read only its new day's events; the others came from the first day's partials
    assert summary["events_read"]["days_reused"] >= 1 and list(summary["events_read"]["days_computed"]) == [
        str(SESSION)
    ]
    counts = summary["steps"]["candidates"]["counts"]
    assert counts["users_recomputed"] + counts["users_refreshed"] == counts["users"] > 0
