"""The one layer above steps and gates: what every caller (reco run, reco step in a pod, tests) goes through.

For a step of the graph it:
1. refuses inputs that a blocking gate stopped (a manual rerun of a later step must not serve them either);
2. runs the step's function;
3. records the step's metrics (a non-sharded step; a sharded step's totals are recorded by the first
   non-sharded step that reads them, since shards run as separate processes);
4. runs the gates declared on the step, commits each verdict, records its figures, alerts on warnings and
   failures, and raises CheckFailedError (exit 3) when a blocking gate failed, so nothing downstream runs; a
   stopping alert that got through is recorded for the Digdag attempt (batch/alerts/sent.py), so the
   workflow's ``_error`` task does not send a second message for the same failure;
5. after the last step of the graph, writes the run report and alerts on metric anomalies;
6. times all of it by phase (batch.timings) and writes the step's timings record, also when the step fails.

Neither steps nor gates import this module; it knows them only through the graph (batch.graph).
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta

import batch.checks.gates  # noqa: F401  registers the gates
import batch.steps  # noqa: F401  registers the steps
from batch import datasets, ledger, metrics_store, report, summary, timings
from batch.alerts import sent
from batch.alerts.slack import SlackNotifier
from batch.checks import anomaly
from batch.context import StepContext
from batch.errors import CheckFailedError, MissingArtifactError
from batch.graph import GRAPH, GateSpec, StepSpec
from batch.prefork import mark_ran_model_code

log = logging.getLogger(__name__)


def deliver(ctx: StepContext, message: dict) -> bool:
    """Send to the environment's Slack webhook (printed to stderr without one). Never raises.

    Returns whether people got it: Slack accepted it, or it was printed because no webhook is set."""
    try:
        notifier = SlackNotifier.from_env(ctx.env.slack.webhook_env, out=sys.stderr)
        return notifier.send(message) or not notifier.configured
    except Exception as e:  # an alert must never fail the batch
        log.warning("quality alert not delivered", extra={"error": f"{type(e).__name__}: {e}"})
        return False


def alert_stop(ctx: StepContext, source: str, message: dict) -> None:
    """Send the message of a failure that stops the batch, and record it for the attempt when it got through."""
    if deliver(ctx, message):
        sent.record_alert(ctx.store, ctx.name, ctx.session_date, source=source, summary=message["text"])


def _table(ctx: StepContext) -> str:
    return ctx.pipeline.checks.anomaly.table


def in_service(ctx: StepContext) -> str:
    latest = ctx.store.latest(ctx.name)
    return (
        f"latest stays {latest['dt']} ({latest['model_version']})" if latest else "nothing is published yet"
    )


def write_report(ctx: StepContext, phases: timings.Phases) -> str | None:
    """Write the run report (best effort); its location, or None."""
    if not ctx.pipeline.checks.report:
        return None
    try:
        with phases.phase("report_s"):
            return report.write_report(ctx.pipeline, ctx.env, ctx.session_date)
    except Exception as e:
        log.warning("run report not written", extra={"error": f"{type(e).__name__}: {e}"})
        return None


# -- 1. refuse what a gate stopped -------------------------------------------------------------------------------


def refuse_stopped_inputs(spec: StepSpec, ctx: StepContext) -> None:
    """A blocking gate must have judged the committed output of each upstream step, and passed it."""
    for upstream in GRAPH.upstream(spec.name):
        if not upstream.is_enabled(ctx.pipeline):
            # e.g. the index with candidates.method exact: a failed index of an earlier ann run of the same date
            # must not refuse the exact candidates, which never read it
            continue
        for gate in GRAPH.gates_on(upstream.name):
            if not gate.blocking:
                continue
            source = datasets.committed_or_none(ctx, upstream.writes)
            if source is None:
                continue  # the step's own read names what is missing and what to rerun
            verdict = datasets.committed_or_none(ctx, gate.dataset)
            meta = verdict.metadata if verdict is not None else {}
            if meta.get("source_run_id") != source.run_id:
                raise MissingArtifactError(
                    f"the {gate.name} has not judged the committed '{upstream.writes}' output (run {source.run_id})",
                    path=source.url,
                    step=upstream.name,
                    rerun=datasets.rerun_command(ctx, upstream.name),
                )
            if not meta.get("passed", False):
                raise CheckFailedError(
                    f"{ctx.name} {ctx.session_date}: the {gate.name} failed for the committed "
                    f"'{upstream.writes}' output (run {source.run_id}): "
                    + "; ".join(meta.get("failures", [])),
                    failures=meta.get("failures", []),
                )


# -- 3. metrics --------------------------------------------------------------------------------------------------


def shard_totals(ctx: StepContext, spec: StepSpec) -> dict:
    """A sharded step's counts summed over its committed shards, and its slowest shard."""
    count = ctx.pipeline.candidates.shard_count
    done = [
        c for i in range(count) if (c := datasets.committed_or_none(ctx, spec.writes, (i, count))) is not None
    ]
    return summary.sharded_entry(done, count)


def record_metrics(spec: StepSpec, ctx: StepContext, rows: list) -> None:
    """One record per step and date (a later record of the same step replaces an earlier one for readers), and
    the totals of the sharded steps this one reads."""
    metrics_store.safe_record(ctx.env, _table(ctx), ctx.name, ctx.session_date, spec.name, rows)
    for upstream in GRAPH.upstream(spec.name):
        if upstream.sharded:
            totals = shard_totals(ctx, upstream)
            metrics_store.safe_record(
                ctx.env,
                _table(ctx),
                ctx.name,
                ctx.session_date,
                upstream.name,
                metrics_store.shard_rows(totals),
            )


# -- 4. gates ----------------------------------------------------------------------------------------------------


def gate_rows(results: list) -> list:
    return [("check_value", {"check": r.name}, r.value) for r in results if r.value is not None] + [
        ("check_failed", {"check": r.name}, float(r.status == "fail")) for r in results
    ]


def commit_verdict(
    ctx: StepContext, gate: GateSpec, results: list, source_run_id: str | None, info: dict
) -> bool:
    """Commit the gate's verdict for the date; returns whether it passed."""
    failures = [r.line() for r in results if r.status == "fail"]
    doc = {
        "gate": gate.name,
        "guards": gate.guards,
        "passed": not failures,
        "failures": failures,
        "source_run_id": source_run_id,
        "results": [r.to_dict() for r in results],
        **info,
    }
    with ctx.store.writer(ctx.name, gate.dataset, ctx.session_date, run_id=ctx.run_id) as w:
        w.write_json(gate.file, doc)
        w.metadata.update(
            {
                "run": ctx.run_record(),
                "gate": gate.name,
                "passed": not failures,
                "failures": failures,
                "source_run_id": source_run_id,
                "info": info,
            }
        )
    return not failures


def judge(gate: GateSpec, ctx: StepContext, result: dict):
    """Run a gate and commit its verdict; returns its outcome."""
    outcome = gate.func(ctx, result)
    source = outcome.source_run_id or datasets.committed(ctx, GRAPH.step(gate.guards).writes).run_id
    commit_verdict(ctx, gate, outcome.results, source, outcome.info)
    return outcome


def act_on(gate: GateSpec, ctx: StepContext, results: list, phases: timings.Phases) -> None:
    """Alert on warnings and failures; stop the batch when a blocking gate failed."""
    failed = [r for r in results if r.status == "fail"]
    warned = [r for r in results if r.status == "warn"]
    if not failed and not warned:
        return
    stopped = bool(failed) and gate.blocking
    lines = [("FAIL " if r.status == "fail" else "WARN ") + r.line() for r in failed + warned]
    kept = in_service(ctx) if stopped else None
    message = anomaly.quality_message(
        pipeline=ctx.name,
        session_date=ctx.session_date.isoformat(),
        env=ctx.env.name,
        gate=gate.name,
        stopped=stopped,
        lines=lines,
        report=write_report(ctx, phases) if stopped else None,
        kept=kept,
    )
    if stopped:
        alert_stop(ctx, gate.name, message)
    else:
        deliver(ctx, message)
    if stopped:
        record_refusal(ctx, gate, failed, results)
        raise CheckFailedError(
            f"{gate.name} failed for {ctx.name} {ctx.session_date}: "
            + "; ".join(r.line() for r in failed)
            + f"; {kept}",
            failures=[r.line() for r in failed],
        )


def record_refusal(ctx: StepContext, gate: GateSpec, failed: list, results: list) -> None:
    """A blocking gate stopped the batch: one ledger entry (best effort: the exit code 3 is what matters)."""
    try:
        serving = (ctx.store.serving(ctx.name) or {}).get("publish")
        entry = ledger.new_entry(
            "refused",
            ctx.name,
            ctx.session_date,
            run_id=ctx.run_id,
            gate=gate.name,
            reason="; ".join(r.line() for r in failed),
            figures={r.name: r.value for r in results if r.value is not None},
            serving=serving and {"dt": serving["dt"], "run_id": serving.get("run_id")},
        )
        ledger.record(ctx.store, ctx.env, _table(ctx), entry)
    except Exception as e:
        log.warning("refusal not recorded in the ledger", extra={"error": f"{type(e).__name__}: {e}"})


# -- anomalies over the metric store -----------------------------------------------------------------------------


def anomalies(ctx: StepContext, step: str | None = None) -> list:
    cfg = ctx.pipeline.checks.anomaly
    if not cfg.enabled:
        return []
    days = max(cfg.window, 7 * cfg.weekday_weeks) + 7 * cfg.weekday_weeks + 7
    hist = metrics_store.safe_history(
        ctx.env, cfg.table, ctx.name, since=ctx.session_date - timedelta(days=days), until=ctx.session_date
    )
    found = anomaly.scan(hist, ctx.session_date, cfg)
    return [a for a in found if step is None or a.metric.startswith(step + ".")]


def alert_anomalies(
    ctx: StepContext,
    location: str | None = None,
    *,
    step: str | None = None,
    failing: bool = False,
    phases: timings.Phases,
) -> None:
    """Send the anomalies found in the metric history to Slack; with ``failing``, stop the batch after."""
    found = anomalies(ctx, step)
    if not found:
        return
    if failing:
        location = write_report(ctx, phases)
    message = anomaly.anomaly_message(
        pipeline=ctx.name,
        session_date=ctx.session_date.isoformat(),
        env=ctx.env.name,
        anomalies=found,
        report=location,
        failing=failing,
    )
    if failing:
        alert_stop(ctx, "metric anomaly check", message)
    else:
        deliver(ctx, message)
    if failing:
        raise CheckFailedError(
            f"metric anomalies for {ctx.name} {ctx.session_date}: "
            + "; ".join(a.message for a in found)
            + f"; {in_service(ctx)}",
            failures=[a.message for a in found],
        )


# -- the entry point ---------------------------------------------------------------------------------------------


def is_last(spec: StepSpec, ctx: StepContext) -> bool:
    enabled = GRAPH.enabled_steps(ctx.pipeline)
    return bool(enabled) and enabled[-1].name == spec.name


def run_step(spec: StepSpec | str, ctx: StepContext, *, startup_s: float | None = None) -> dict:
    """Run one step (one shard of a sharded step) with everything the graph declares around it.

    ``startup_s``: how long the process took to get here (`reco step` passes it), for the timings record."""
    if isinstance(spec, str):
        spec = GRAPH.step(spec)
    mark_ran_model_code()  # a fork of this process could not run model code any more (batch.prefork)
    phases = timings.Phases()
    result: dict = {}
    try:
        with phases.phase("inputs_check_s"):
            refuse_stopped_inputs(spec, ctx)
        with phases.phase("work_s"):
            result = spec.func(ctx)
        if not spec.sharded:
            judge_record_and_act(spec, ctx, result, phases)
    finally:
        write_timings(spec, ctx, startup_s, result, phases)
    return result


def judge_record_and_act(spec: StepSpec, ctx: StepContext, result: dict, phases: timings.Phases) -> None:
    """What follows a non-sharded step: its gates, its metrics, alerts, and after the last step the report."""
    rows = list(spec.metrics(result)) if spec.metrics else metrics_store.result_rows(result)
    judged = []
    for gate in GRAPH.gates_on(spec.name):
        with phases.phase(f"gate_{gate.name.replace(' ', '_')}_s"):
            outcome = judge(gate, ctx, result)
        rows += list(outcome.metrics) + gate_rows(outcome.results)
        judged.append((gate, outcome))
    with phases.phase("metric_store_s"):
        record_metrics(spec, ctx, rows)
    for gate, outcome in judged:
        with phases.phase("alerts_s"):
            act_on(gate, ctx, outcome.results, phases)
    if ctx.pipeline.checks.anomaly.severity == "fail":
        with phases.phase("anomalies_s"):
            alert_anomalies(ctx, step=spec.name, failing=True, phases=phases)
    if is_last(spec, ctx):
        result["report"] = write_report(ctx, phases)
        with phases.phase("anomalies_s"):
            alert_anomalies(ctx, result["report"], phases=phases)


def write_timings(
    spec: StepSpec, ctx: StepContext, startup_s: float | None, result: dict, phases: timings.Phases
) -> None:
    """The step process's timings record (best effort: timings never fail a step)."""
    rec = timings.record(
        step=spec.name,
        run_id=ctx.run_id,
        shard=ctx.shard if spec.sharded else None,
        startup_s=startup_s,
        work=result.get("timings") or {},
        phases=phases,
    )
    log.info(
        "step timings",
        extra={"step": spec.name, "total_s": rec["total_s"], "startup_s": startup_s, **rec["platform"]},
    )
    try:
        ctx.store.write_timings(
            ctx.name, ctx.session_date, spec.name, ctx.shard if spec.sharded else None, rec
        )
    except Exception as e:
        log.warning("timings not written", extra={"error": f"{type(e).__name__}: {e}"})


def run_date(ctx_for_shard, say=print) -> None:
    """Every enabled step of the graph for one date, shards in turn (``reco run``, tests).

    ``ctx_for_shard(index)`` gives the context of shard ``index`` (the same run id for all)."""
    probe = ctx_for_shard(0)
    count = probe.pipeline.candidates.shard_count
    startup_s = timings.process_age_s()  # the process's start-up is the first step's
    for spec in GRAPH.steps():
        if not spec.is_enabled(probe.pipeline):
            say(f"  {spec.name:<10} skipped (not enabled for this pipeline)")
            continue
        for index in range(count) if spec.sharded else [0]:
            ctx = ctx_for_shard(index) if spec.sharded else probe
            t = time.perf_counter()
            run_step(spec, ctx, startup_s=startup_s)
            startup_s = None
            label = f"{spec.name} [{index + 1}/{count}]" if spec.sharded else spec.name
            say(f"  {label:<16} done in {time.perf_counter() - t:6.1f}s")
