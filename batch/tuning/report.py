"""What a finished study tells people: the Slack summary and `reco tune --show`'s overview of a study."""

from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)


def slack_message(report: dict, env: str) -> dict:
    """Block Kit summary: gain, best parameters, trials finished/failed/pruned, promoted or not."""
    metric = report.get("metric", "ndcg@10")
    trials = report.get("trials") or {}
    prod = (report.get("production") or {}).get(metric)
    tuned = report.get("tuned") or {}
    gain = report.get("gain")
    promoted = report.get("promoted")
    status = (
        ":large_green_circle: promoted"
        if promoted
        else ":white_circle: dry run, not promoted"
        if report.get("dry_run")
        else ":white_circle: not promoted"
    )
    fields = [
        {"type": "mrkdwn", "text": f"*Status*\n{status}"},
        {"type": "mrkdwn", "text": f"*Study*\n`{report.get('study')}` ({env})"},
        {"type": "mrkdwn", "text": f"*{metric}*\nproduction {_fmt(prod)} → tuned {_fmt(tuned.get(metric))}"},
        {"type": "mrkdwn", "text": f"*Gain*\n{gain:+.2%}" if isinstance(gain, float) else "*Gain*\nn/a"},
        {
            "type": "mrkdwn",
            "text": f"*Trials*\n{trials.get('finished', 0)}/{report.get('budget')} finished: "
            f"{trials.get('complete', 0)} complete, {trials.get('pruned', 0)} pruned, {trials.get('fail', 0)} failed",
        },
        {"type": "mrkdwn", "text": f"*Best trial*\n#{report.get('best_trial', 'n/a')}"},
    ]
    params = json.dumps({"model_type": tuned.get("model_type"), **(tuned.get("params") or {})}, default=str)
    blocks = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": f"tuning {report.get('pipeline')} {report.get('date')} ({env})",
            },
        },
        {"type": "section", "fields": fields},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Best parameters*\n`{params[:2800]}`"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": str(report.get("reason", ""))[:2900]}]},
    ]
    text = f"reco tune {report.get('study')}: " + ("promoted" if promoted else "not promoted")
    return {"text": text, "blocks": blocks}


def study_overview(study: optuna.Study, top: int = 10) -> dict:
    trials = study.get_trials(deepcopy=False)
    by_state: dict[str, int] = {}
    for t in trials:
        by_state[t.state.name.lower()] = by_state.get(t.state.name.lower(), 0) + 1
    complete = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value, reverse=True
    )
    return {
        "name": study.study_name,
        "settings": study.user_attrs.get("settings"),
        "budget": study.user_attrs.get("budget"),
        "trials": by_state,
        "best": [
            {"trial": t.number, "value": t.value, "params": t.params, "role": t.user_attrs.get("role")}
            for t in complete[:top]
        ],
        "failed": [
            {"trial": t.number, "reason": t.user_attrs.get("fail_reason")}
            for t in trials
            if t.state == TrialState.FAIL
        ],
    }
