"""`make bench` / `python -m bench.run [--sizes 1M,10M] [--quick]`.

For each size: seeded synthetic data (generation not timed), then in ONE run
1. every step of `reco run` as its own `reco step` subprocess: wall time and peak memory;
2. the whole `reco run` (as configured, with its offline evaluation; and with evaluation disabled) against the
   hand-written implicit batch (bench/handwritten.py) and Spark MLlib ALS (bench/spark_als.py), times and
   nDCG@10 on one temporal holdout (bench/evaluate.py);
3. candidates scoring against implicit's recommend on the same model (bench/candidates.py).
Then, once (not per size): 4. the dashboard's page timings, p95 over 200 requests vs the 300 ms target
(bench/dashboard.py; --no-dashboard, --dashboard-only); 5. ANN candidates against our exact scoring on 1M
structured items x 100k users (bench/ann_candidates.py) and the per-unit costs of the capacity plan
(bench/calibrate.py, which rewrites batch/calibration.json from microbenchmarks and from this module's per-step
runs at 1M and 3M events; --no-ann skips both). The plan against a measured 10M-event run is
bench/plan_check.py (docs/scale.md); the ANN library comparison is bench/ann_compare.py (docs/ann.md).
Prints the figures side by side; writes bench/results/bench-<stamp>.json and .md (and latest.*).
Method and latest figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import incremental as incremental_bench
from bench import startup
from bench.measure import Measured, reco_cmd, run_measured
from bench.synthetic import generate_args, items_for, label, parse_size, users_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PIPELINE = "demo"
FACTORS, ITERATIONS, N = 64, 15, 50
OVERRIDES = [f"model.params.factors={FACTORS}", f"model.params.iterations={ITERATIONS}", f"candidates.n={N}"]
DAYS = 30  # generated days: the 28-day window of S plus the holdout day S+1 plus a margin
STEP_SHARDS = 2  # processes per sharded step in the per-step measurement
STEPS_EXACT = ("aggregate", "train", "candidates", "related", "export")
STEPS_ANN = ("aggregate", "train", "index", "candidates", "related", "export")  # index is enabled by ann/auto


def sets(extra: list[str] = ()) -> list[str]:
    out = []
    for s in [*OVERRIDES, *extra]:
        out += ["--set", s]
    return out


def mb(x: float) -> str:
    return f"{x:,.0f}"


class Bench:
    def __init__(self, size: int, work: Path, args):
        self.size, self.args = size, args
        self.name = label(size)
        self.home = work / self.name
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "RECO_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        self.users = users_for(size)
        self.items = items_for(size)
        # the holdout day must be complete and in the past (events after "now" are dropped as future)
        self.holdout_day = datetime.now(UTC).date() - timedelta(days=2)
        self.session = self.holdout_day - timedelta(days=1)
        self.db = str(self.home / "warehouse.duckdb")
        self.out: dict = {
            "size": self.name,
            "target_events": size,
            "users": self.users,
            "items": self.items,
            "session_date": str(self.session),
            "holdout_day": str(self.holdout_day),
        }

    def log(self, msg: str) -> None:
        print(f"[{self.name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def run(self, cmd: list[str], what: str, timeout: float | None = None, check: bool = True) -> Measured:
        self.log(f"{what} ...")
        m = run_measured(cmd, env=self.env, timeout=timeout, cwd=str(ROOT))
        state = "TIMED OUT" if m.timed_out else ("ok" if m.returncode == 0 else f"FAILED rc={m.returncode}")
        self.log(f"{what}: {state} in {m.wall_s:.1f}s, peak {m.peak_mb:,.0f} MB")
        if check and not m.ok:
            raise RuntimeError(f"{what} failed (rc {m.returncode}):\n{m.stderr_tail}")
        return m

    @staticmethod
    def last_json(m: Measured) -> dict:
        for line in reversed(m.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    pass
        try:
            return json.loads(m.stdout)
        except json.JSONDecodeError:
            return {}

    # -- data ------------------------------------------------------------------------------------------------
    def generate(self, reuse: bool = False) -> None:
        """Seeded synthetic data in this size's RECO_HOME; ``reuse``: keep the data a previous generate left there
        (same seed and sizes, so the same rows)."""
        marker = self.home / "generate.json"
        if reuse and marker.exists():
            self.log("generate data: reusing the data already there")
            self.out["generate"] = json.loads(marker.read_text())
            self._window()
            return
        m = self.run(
            [*reco_cmd(), *generate_args(PIPELINE, self.size, DAYS, self.holdout_day)],
            "generate data",
        )
        self.out["generate"] = {"wall_s": m.wall_s, **self.last_json(m)}
        marker.write_text(json.dumps(self.out["generate"]))
        self._window()

    def _window(self) -> None:
        import duckdb

        from batch.config import load_pipeline
        from batch.context import Window

        cfg = load_pipeline(PIPELINE, "local")
        self.window = Window.for_session(
            self.session, cfg.aggregate.lookback_days, cfg.evaluation.holdout_days, cfg.source.timezone
        )
        self.events_table = cfg.source.events_table
        con = duckdb.connect(self.db, read_only=True)
        self.out["events_in_window"] = con.execute(
            f"SELECT count(*) FROM {self.events_table} WHERE ts >= ? AND ts < ?",
            [self.window.start, self.window.end],
        ).fetchone()[0]
        con.close()

    def spark_events(self) -> str:
        """Spark reads Parquet: the same rows with integer codes (untimed preparation)."""
        import duckdb

        self.events_parquet = str(self.home / "events.parquet")
        con = duckdb.connect(self.db, read_only=True)
        con.execute(
            f"COPY (SELECT user_id, item_id, event_type, ts, "
            f"CAST(dense_rank() OVER (ORDER BY user_id) AS INTEGER) - 1 AS user_code, "
            f"CAST(dense_rank() OVER (ORDER BY item_id) AS INTEGER) - 1 AS item_code "
            f"FROM {self.events_table}) TO '{self.events_parquet}' (FORMAT parquet)"
        )
        con.close()
        return self.events_parquet

    # -- 1. per step -----------------------------------------------------------------------------------------
    def steps(
        self, extra_sets: list[str] = (), key: str = "steps", names: tuple[str, ...] = ()
    ) -> list[dict]:
        """Every step of the run (or ``names``) as its own ``reco step`` process (sharded steps: STEP_SHARDS
        processes): wall, CPU seconds, peak memory. The index step runs when ``extra_sets`` enable it (ANN)."""
        base = ["--pipeline", PIPELINE, "--date", str(self.session), *sets(extra_sets)]
        ann = any(s.startswith("candidates.method=a") for s in extra_sets)
        names = names or (STEPS_ANN if ann else STEPS_EXACT)
        rows = []
        for name in names:
            parts = range(STEP_SHARDS) if name in ("candidates", "related") else [None]
            ms = []
            for idx in parts:
                extra = [] if idx is None else ["--shard-index", str(idx), "--shard-count", str(STEP_SHARDS)]
                m = self.run(
                    [*reco_cmd(), "step", name, *base, *extra],
                    f"step {name}" + ("" if idx is None else f" shard {idx + 1}/{STEP_SHARDS}"),
                )
                ms.append(
                    {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_mb": m.peak_mb, "result": self.last_json(m)}
                )
                if name == "aggregate":
                    self._agg_result = ms[-1]["result"]
                if name == "train":
                    self._train_result = ms[-1]["result"]
            rows.append(
                {
                    "step": name,
                    "wall_s": sum(x["wall_s"] for x in ms),
                    "cpu_s": sum(x["cpu_s"] for x in ms),
                    "peak_mb": max(x["peak_mb"] for x in ms),
                    "shards": ms if len(ms) > 1 else None,
                    "timings": ms[0]["result"].get("timings"),
                }
            )
        self.out[key] = rows
        self.out["interactions"] = (
            (getattr(self, "_agg_result", None) or {}).get("stats", {}).get("interactions", 0)
        )
        return rows

    # -- 2. whole batch vs hand-written vs Spark -----------------------------------------------------------
    def whole(self) -> None:
        base = [*reco_cmd(), "run", "--pipeline", PIPELINE, "--date", str(self.session)]
        hw_out = str(self.home / "handwritten.parquet")
        hw = [
            sys.executable,
            "-m",
            "bench.handwritten",
            "--db",
            self.db,
            "--table",
            self.events_table,
            "--start",
            self.window.start.isoformat(),
            "--end",
            self.window.end.isoformat(),
            "--out",
            hw_out,
            "--factors",
            str(FACTORS),
            "--iterations",
            str(ITERATIONS),
            "-n",
            str(N),
        ]
        runs: dict[str, list] = {
            "reco_run_configured": [],
            "reco_run_no_eval": [],
            "reco_run_core": [],
            "handwritten_implicit": [],
        }
        repeats = self.args.repeats or (1 if self.args.quick or self.size >= 5_000_000 else 2)
        for rep in range(repeats):  # interleaved, so that load from other processes hits all alike
            for key, cmd in (
                ("handwritten_implicit", hw),
                ("reco_run_no_eval", [*base, *sets(["evaluation.enabled=false"])]),
                ("reco_run_core", [*base, *sets(["evaluation.enabled=false", "checks.report=false"])]),
                ("reco_run_configured", [*base, *sets()]),
            ):
                if (
                    key in ("reco_run_configured", "reco_run_core")
                    and rep > 0
                    and not self.args.repeat_configured
                ):
                    continue
                m = self.run(cmd, f"{key} (#{rep + 1})")
                entry = {"wall_s": m.wall_s, "peak_mb": m.peak_mb, "result": self.last_json(m)}
                if key.startswith("reco_run"):
                    entry["phases"] = self.run_phases(m.wall_s)
                runs[key].append(entry)
            # the last reco run of the loop is the configured one; its summary holds reco's own metrics
        configured = runs["reco_run_configured"][-1]["result"]
        self.out["reco_internal_metrics"] = configured.get("metrics")
        # the model is seeded: every reco run makes the same model, so the committed export (from the
        # configured run, the last one) stands for all of them in the nDCG comparison
        spark = None
        if not self.args.no_spark:
            self.spark_events()
            spark_out = str(self.home / "spark_recs")
            timeout = self.args.spark_timeout
            m = self.run(
                [
                    sys.executable,
                    "-m",
                    "bench.spark_als",
                    "--events",
                    self.events_parquet,
                    "--start",
                    self.window.start.astimezone(UTC).replace(tzinfo=None).isoformat(),
                    "--end",
                    self.window.end.astimezone(UTC).replace(tzinfo=None).isoformat(),
                    "--out",
                    spark_out,
                    "--rank",
                    str(FACTORS),
                    "--max-iter",
                    str(ITERATIONS),
                    "-n",
                    str(N),
                ],
                "spark_mllib_als",
                timeout=timeout,
                check=False,
            )
            spark = {
                "wall_s": m.wall_s,
                "peak_mb": m.peak_mb,
                "timed_out": m.timed_out,
                "timeout_s": timeout,
                "returncode": m.returncode,
                "result": self.last_json(m),
            }
            if not m.ok and not m.timed_out:
                spark["error"] = m.stderr_tail[-1500:]
            shutil.rmtree(spark_out + ".checkpoints", ignore_errors=True)
        self.out["whole"] = {k: v for k, v in runs.items()}
        self.out["whole"]["spark_mllib_als"] = spark
        self.log("nDCG@10 on the holdout ...")
        self.out["ndcg"] = self.quality(hw_out, spark)

    def run_phases(self, wall_s: float) -> dict:
        """Where the last `reco run` spent its wall time, from its own timings records (batch/timings.py)."""
        m = self.run(
            [*reco_cmd(), "show", "summary", "--pipeline", PIPELINE, "--date", str(self.session)], "summary"
        )
        return split_run_time(json.loads(m.stdout).get("steps", {}), wall_s)

    def quality(self, hw_out: str, spark: dict | None) -> dict:
        import pandas as pd
        import pyarrow.parquet as pq

        from batch.storage import ArtifactStore
        from bench.evaluate import Holdout, read_recs

        hold = Holdout(self.db, self.events_table, self.window.start, self.window.end)
        out = {"users_evaluated": len(hold.users), "relevant_pairs": int(hold.relevant.nnz)}
        store = ArtifactStore(str(self.home / "artifacts"))
        export = store.committed(PIPELINE, "export", self.session, step="export")
        out["reco_run"] = hold.score(read_recs(export.path("recommendations.parquet")))
        out["handwritten_implicit"] = hold.score(read_recs(hw_out))
        if spark and spark["returncode"] == 0 and not spark["timed_out"]:
            recs = pq.read_table(str(self.home / "spark_recs")).to_pandas()
            codes = pq.read_table(
                self.events_parquet, columns=["user_id", "user_code", "item_id", "item_code"]
            ).to_pandas()
            umap = codes.drop_duplicates("user_code").set_index("user_code")["user_id"]
            imap = codes.drop_duplicates("item_code").set_index("item_code")["item_id"]
            recs = pd.DataFrame(
                {
                    "user_id": recs["user_code"].map(umap).to_numpy(),
                    "item_id": recs["item_code"].map(imap).to_numpy(),
                    "rank": recs["rank"].to_numpy(),
                }
            )
            out["spark_mllib_als"] = hold.score(recs)
            out["spark_mllib_als_seen_filtered"] = hold.score(recs, filter_seen=True)
        return out

    # -- 3. candidates scoring -------------------------------------------------------------------------------
    def candidates(self) -> None:
        m = self.run(
            [
                sys.executable,
                "-m",
                "bench.candidates",
                "--artifacts",
                str(self.home / "artifacts"),
                "--pipeline",
                PIPELINE,
                "--date",
                str(self.session),
                "-n",
                str(N),
                "--repeats",
                str(self.args.candidate_repeats or (2 if self.size >= 5_000_000 else 3)),
            ],
            "candidates: ours vs implicit.recommend",
        )
        self.out["candidates_scoring"] = {"wall_s": m.wall_s, "peak_mb": m.peak_mb, **self.last_json(m)}


# -- report --------------------------------------------------------------------------------------------------


def split_run_time(steps: dict, wall_s: float) -> dict:
    """A `reco run`'s wall time split into fit/scoring (what the hand-written batch also does: ALS fits,
    including the evaluation's, and the candidates and related steps' work), the steps' other work, the
    platform's phases (start-up, gates, metric store, alerts, report) and what no step recorded (the run's own
    set-up between steps)."""
    fit_scoring = other_work = 0.0
    platform: dict[str, float] = {}
    for name, entry in steps.items():
        rec = entry.get("phases") or {}
        if not rec:
            continue
        shards = len(rec.get("shards_total_s") or []) or 1  # reco run runs the shards one after another
        work, work_s = rec.get("work") or {}, (rec.get("work_s") or 0.0) * shards
        if name in ("candidates", "related"):
            fit_scoring += work_s
        else:
            fits = (work.get("fit_s") or 0.0) + (work.get("evaluate_s") or 0.0)
            fit_scoring += fits
            other_work += max(0.0, work_s - fits)
        for k, v in (rec.get("platform") or {}).items():
            platform[k] = round(platform.get(k, 0.0) + v * shards, 3)
        if rec.get("startup_s"):
            platform["startup_s"] = round(platform.get("startup_s", 0.0) + rec["startup_s"], 3)
    recorded = fit_scoring + other_work + sum(platform.values())
    return {
        "fit_scoring_s": round(fit_scoring, 3),
        "other_work_s": round(other_work, 3),
        "platform": platform,
        "unrecorded_s": round(max(0.0, wall_s - recorded), 3),
        "not_fit_or_scoring_share": round(1 - fit_scoring / wall_s, 4) if wall_s else None,
    }


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall_s"])


def report(results: list[dict], meta: dict) -> str:
    names = [r["size"] for r in results]
    L = [
        f"# reco-batch benchmark ({meta['started']})",
        "",
        f"Machine: {meta['cpus']} cores, {meta['mem_gb']:.0f} GiB, {meta['platform']}; python {meta['python']}. "
        f"ALS {FACTORS} factors, {ITERATIONS} iterations, N={N}. Wall times are the best of the interleaved "
        "repeats; peak memory = max RSS of the process tree.",
        "",
    ]
    L.append("## Data\n")
    L.append("| | " + " | ".join(names) + " |")
    L.append("|---|" + "---|" * len(names))
    for key, fmt in (("events_in_window", "{:,}"), ("users", "{:,}"), ("items", "{:,}")):
        L.append(f"| {key} | " + " | ".join(fmt.format(r[key]) for r in results) + " |")
    L.append(
        "| interactions (user-item, after aggregate) | "
        + " | ".join(f"{r.get('interactions', 0):,}" for r in results)
        + " |"
    )
    L.append(
        "| generation s (not compared) | "
        + " | ".join(f"{r['generate']['wall_s']:.1f}" for r in results)
        + " |"
    )
    L.append("\n## 1. Per step (`reco step`, one subprocess each, evaluation as configured)\n")
    L.append("| step | " + " | ".join(f"{n} wall s | {n} peak MB" for n in names) + " |")
    L.append("|---|" + "---|---|" * len(names))
    for i, st in enumerate(results[0]["steps"]):
        cells = []
        for r in results:
            s = r["steps"][i]
            cells += [f"{s['wall_s']:.1f}", mb(s["peak_mb"])]
        name = st["step"] + (" (2 shards: sum / max)" if st["shards"] else "")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    L.append(
        "| **total** | "
        + " | ".join(
            f"**{sum(s['wall_s'] for s in r['steps']):.1f}** | {mb(max(s['peak_mb'] for s in r['steps']))}"
            for r in results
        )
        + " |"
    )
    L.append("\n## 2. Whole batch: reco run vs hand-written implicit vs Spark MLlib ALS\n")
    L.append("| batch | " + " | ".join(f"{n} wall s | {n} peak MB | {n} nDCG@10" for n in names) + " |")
    L.append("|---|" + "---|---|---|" * len(names))
    rows = [
        ("reco run, as configured (evaluation on: 2 fits)", "reco_run_configured", "reco_run"),
        ("reco run, evaluation.enabled=false", "reco_run_no_eval", "reco_run"),
        ("reco run, evaluation off + checks.report=false", "reco_run_core", "reco_run"),
        ("hand-written implicit", "handwritten_implicit", "handwritten_implicit"),
        ("Spark MLlib ALS local[2]", "spark_mllib_als", "spark_mllib_als"),
    ]
    for title, key, qkey in rows:
        cells = []
        for r in results:
            w = r["whole"].get(key)
            q = r.get("ndcg", {}).get(qkey)
            if w is None:
                cells += ["not run", "", ""]
                continue
            if isinstance(w, list):
                w = best(w)
            if w.get("timed_out"):
                cells += [f"> {w['timeout_s']:.0f}", mb(w["peak_mb"]), "n/a"]
            elif w.get("returncode", 0) not in (0, None):
                cells += ["failed", mb(w["peak_mb"]), "n/a"]
            else:
                nd = f"{q['ndcg@10']:.4f}" if q else "n/a"
                if key == "spark_mllib_als" and r["ndcg"].get("spark_mllib_als_seen_filtered"):
                    nd += f" ({r['ndcg']['spark_mllib_als_seen_filtered']['ndcg@10']:.4f} seen-filtered)"
                cells += [f"{w['wall_s']:.1f}", mb(w["peak_mb"]), nd]
        L.append(f"| {title} | " + " | ".join(cells) + " |")
    L.append("")
    for r in results:
        w = r["whole"]
        reco, hw = best(w["reco_run_no_eval"])["wall_s"], best(w["handwritten_implicit"])["wall_s"]
        conf = best(w["reco_run_configured"])["wall_s"]
        sp = w.get("spark_mllib_als")
        line = (
            f"- {r['size']}: hand-written / reco run (no eval) = **{hw / reco:.2f}x** (target >= 1.0: "
            f"{'met' if reco <= hw else 'MISSED'}); as configured {hw / conf:.2f}x"
        )
        if w.get("reco_run_core"):
            line += f"; without the HTML report {hw / best(w['reco_run_core'])['wall_s']:.2f}x"
        if sp:
            ratio = sp["wall_s"] / reco
            if sp["timed_out"]:
                line += f"; Spark / reco run > **{ratio:.1f}x** (Spark stopped at {sp['timeout_s']:.0f}s)"
            elif sp["returncode"] == 0:
                line += f"; Spark / reco run = **{ratio:.1f}x** (target >= 10: {'met' if ratio >= 10 else 'MISSED'})"
            else:
                line += "; Spark failed"
        nd = r["ndcg"]
        line += f". Holdout: {nd['users_evaluated']:,} users, {nd['relevant_pairs']:,} new (user, item) pairs"
        im = (r.get("reco_internal_metrics") or {}).get("model", {})
        if im:
            line += f"; reco's own offline nDCG@10 (its holdout split): {im.get('ndcg@10', float('nan')):.4f}"
        L.append(line + ".")
        parts = []
        for key in ("handwritten_implicit", "reco_run_no_eval"):
            res = best(w[key])["result"]
            t = res.get("timings")
            if t:
                parts.append(f"hand-written phases {json.dumps(t)}")
        if sp and sp.get("result", {}).get("timings"):
            parts.append(f"Spark phases {json.dumps(sp['result']['timings'])}")
        for p in parts:
            L.append(f"  - {p}")
    L.append("\n### Where reco run's time went (its own timings records)\n")
    L.append(
        "Fit/scoring = the ALS fits (the evaluation's included) and the candidates and related steps' work; the "
        "issue's target: everything else at most 15 % of the run's wall time.\n"
    )
    L.append(
        "| size | run | wall s | fit/scoring s | other work s | platform phases s | unrecorded s | not fit/scoring |"
    )
    L.append("|---|---|---|---|---|---|---|---|")
    for r in results:
        for title, key in (("as configured", "reco_run_configured"), ("evaluation off", "reco_run_no_eval")):
            run = best(r["whole"][key]) if r["whole"].get(key) else None
            ph = (run or {}).get("phases")
            if not ph:
                continue
            plat = ", ".join(
                f"{k.removesuffix('_s')} {v:.1f}"
                for k, v in sorted(ph["platform"].items(), key=lambda kv: -kv[1])
                if v >= 0.05
            )
            share = ph["not_fit_or_scoring_share"]
            L.append(
                f"| {r['size']} | {title} | {run['wall_s']:.1f} | {ph['fit_scoring_s']:.1f} | {ph['other_work_s']:.1f} | "
                f"{plat} | {ph['unrecorded_s']:.1f} | **{share:.0%}** ({'met' if share <= 0.15 else 'MISSED'}) |"
            )
    L.append("\n## 3. Candidates scoring (same model, same users, seen + unavailable filtered, N=50)\n")
    L.append("| | " + " | ".join(names) + " |")
    L.append("|---|" + "---|" * len(names))
    c = [r["candidates_scoring"] for r in results]
    L.append(
        "| users x items scored x factors | "
        + " | ".join(f"{x['users']:,} x {x['items_scored']:,} x {x['factors']}" for x in c)
        + " |"
    )
    L.append(
        "| ours (models.recommend / models.topk) users/s | "
        + " | ".join(f"{x['users_per_s']['ours']:,.0f}" for x in c)
        + " |"
    )
    L.append(
        "| implicit model.recommend users/s | "
        + " | ".join(f"{x['users_per_s']['implicit']:,.0f}" for x in c)
        + " |"
    )
    L.append("| **speed-up** (target >= 1.5x) | " + " | ".join(f"**{x['speedup']:.2f}x**" for x in c) + " |")
    L.append(
        "| identical top-N rows (match rate) | "
        + " | ".join(
            f"{x['identical']['match_rate']:.5f} ({x['identical']['rows_differing_only_in_ties']} tie rows, "
            f"{x['identical']['rows_differing_beyond_ties']} beyond ties)"
            for x in c
        )
        + " |"
    )
    L.append(
        "| scoring GFLOP/s, ours / implicit | "
        + " | ".join(f"{x['scoring_gflops']['ours']:.0f} / {x['scoring_gflops']['implicit']:.0f}" for x in c)
        + " |"
    )
    L.append(
        "| numpy float32 matmul GFLOP/s, same shape | "
        + " | ".join(f"{x['numpy_matmul']['gflops']:.0f}" for x in c)
        + " |"
    )
    cand = [next(s for s in r["steps"] if s["step"] == "candidates") for r in results]
    L.append(
        "| candidates step peak MB (per shard process) | " + " | ".join(mb(s["peak_mb"]) for s in cand) + " |"
    )
    if len(results) > 1:
        a, b = results[0], results[-1]
        ca = next(s for s in a["steps"] if s["step"] == "candidates")["peak_mb"]
        cb = next(s for s in b["steps"] if s["step"] == "candidates")["peak_mb"]
        L.append(
            f"\nCandidates step peak memory {a['size']} -> {b['size']} (users x{b['users'] / a['users']:.0f}, "
            f"items {a['items']:,} -> {b['items']:,}): {mb(ca)} -> {mb(cb)} MB (x{cb / ca:.2f})."
        )
    return "\n".join(L) + "\n"


def ann_section(args) -> str:
    """4. ANN vs exact candidates, and the calibration of the capacity plan (each its own child process)."""
    L = ["\n## 4. ANN candidates vs exact scoring, and the capacity plan's calibration\n"]
    small = ["--items", "200000", "--users", "20000"] if args.quick else ["--exact-users", "5000"]
    m = run_measured([sys.executable, "-m", "bench.ann_candidates", *small], cwd=str(ROOT))
    if m.ok:
        a = json.loads(m.stdout.strip().splitlines()[-1])
        L.append(
            f"{a['items']:,} items x {a['factors']} factors, {a['users']:,} users, N={a['n']}, {a['cores']} cores: "
            f"ANN ({a['index']['kind']}, {json.dumps(a['index']['params'].get('nlist'))} cells, nprobe "
            f"{a['index']['params'].get('nprobe')}) {a['ann_users_per_s']:,.0f} users/s vs exact "
            f"{a['exact_users_per_s']:,.0f} users/s ({a['exact_users_timed']:,} users timed): **{a['speedup']:.1f}x** "
            f"(target >= 10x) at recall@{a['n']} **{a['recall_at_n']:.3f}** (target >= 0.95); build "
            f"{a['build_s']:.0f} s (target < 300 s), build process peak {a['build_peak_mb']:,} MB."
        )
    else:
        L.append(f"ANN candidates bench failed: {m.stderr_tail[-400:]}")
    cmd = [sys.executable, "-m", "bench.calibrate"] + (["--quick"] if args.quick else [])
    m = run_measured(cmd, cwd=str(ROOT))
    L.append(
        f"\nCalibration ({'ok' if m.ok else 'FAILED'}, {m.wall_s:.0f} s): batch/calibration.json rewritten."
    )
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=None, help="events per dataset, e.g. 1M,10M (default; --quick: 100k)")
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: 100k events, one repeat, Spark capped at 300s"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved repeats of the whole-batch runs (default 2 below 5M events, else 1)",
    )
    p.add_argument(
        "--repeat-configured", action="store_true", help="also repeat the configured and no-report reco runs"
    )
    p.add_argument(
        "--candidate-repeats", type=int, default=None, help="interleaved rounds (default 3, 2 from 5M events)"
    )
    p.add_argument("--spark-timeout", type=float, default=None, help="seconds (default 900; --quick 300)")
    p.add_argument("--no-spark", action="store_true")
    p.add_argument("--no-ann", action="store_true", help="skip the ANN candidates bench and the calibration")
    p.add_argument("--workdir", default=None, help="where datasets go (default: a temp dir, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument(
        "--no-dashboard", action="store_true", help="skip the dashboard page timings (bench/dashboard.py)"
    )
    p.add_argument("--dashboard-only", action="store_true", help="only the dashboard page timings")
    p.add_argument(
        "--incremental",
        action="store_true",
        help="only the 7-day incremental-vs-full sequence (bench/incremental.py) at the last of --sizes (10M)",
    )
    args = p.parse_args(argv)
    if args.incremental:
        return incremental_bench.main(["--size", (args.sizes or "10M").split(",")[-1]])
    if args.dashboard_only:
        from bench import dashboard

        return dashboard.main([])
    sizes = [parse_size(s) for s in (args.sizes or ("100k" if args.quick else "1M,10M")).split(",")]
    args.spark_timeout = args.spark_timeout or (300.0 if args.quick else 900.0)
    if args.quick:
        args.candidate_repeats = args.candidate_repeats or 2

    import psutil

    meta = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "mem_gb": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sizes": [label(s) for s in sizes],
        "args": vars(args),
    }
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="reco-bench-"))
    results = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        for size in sizes:
            b = Bench(size, work, args)
            b.generate()
            b.steps()
            b.whole()
            b.candidates()
            results.append(b.out)
            (RESULTS / f"bench-{stamp}.json").write_text(
                json.dumps({"meta": meta, "results": results}, indent=1, default=str)
            )
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    md = report(results, meta)
    md += (
        "\n## Start-up (`python -m bench.startup`: fresh interpreters, median of 7)\n\n"
        + startup.table()
        + "\n"
    )
    if not args.no_ann:
        md += ann_section(args)
    (RESULTS / f"bench-{stamp}.md").write_text(md)
    shutil.copyfile(RESULTS / f"bench-{stamp}.json", RESULTS / "latest.json")
    (RESULTS / "latest.md").write_text(md)
    print(md)
    print(f"results: {RESULTS / f'bench-{stamp}.md'} (.json)", file=sys.stderr)
    if not args.no_dashboard:
        from bench import dashboard

        dashboard.main([])  # prints its own table; results/dashboard-latest.md
    return 0


if __name__ == "__main__":
    sys.exit(main())
