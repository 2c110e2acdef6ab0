"""What the dashboard reads: the metric store and the artifact store of one environment, through the batch's own
public functions (metrics_store.history, ArtifactStore.committed/latest/publish_records, summary.build_summary),
so DuckDB + local files here and BigQuery + gs:// in the cloud go through the same code.

Request values never reach SQL text: the metric store is read by ``metrics_store.history`` with query
parameters, then filtered in pandas; Parquet artifacts are read by DuckDB with ``$parameters`` only.

A pipeline's metric history (all of it, for the chosen span) is read once and kept for ``dashboard.cache_s``
seconds: pages then filter it in memory, which is what keeps every page fast on two years of daily metrics.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

import batch.checks.gates  # noqa: F401  registers the gates
import batch.steps  # noqa: F401  registers the steps
from batch import metrics_store as ms
from batch.checks import anomaly, forecast
from batch.config import list_pipelines, load_pipeline
from batch.errors import ArtifactError, ConfigError
from batch.graph import GRAPH
from batch.storage import ArtifactStore
from batch.summary import build_summary
from batch.warehouse.duckdb import register_fsspec

log = logging.getLogger(__name__)

HISTORY_DAYS = 3 * 366  # how far back the dashboard reads the metric store
SPARK_DAYS = 30
MAX_ENTRIES = 2048


class NotFound(Exception):
    """Something named in the URL does not exist; ``known`` says what does."""

    def __init__(self, what: str, known: list[str], hint: str = ""):
        super().__init__(what)
        self.what, self.known, self.hint = what, known, hint


class StoreUnavailable(Exception):
    """The metric store (or the artifact store) could not be read."""


@dataclass
class SeriesKey:
    """One metric series: pipeline, step, metric and its dimensions (the segment, e.g. reason=null_id)."""

    pipeline: str
    step: str
    metric: str
    dims: dict[str, str] = field(default_factory=dict)

    @property
    def dims_json(self) -> str:
        return ms.dims(self.dims)

    @property
    def name(self) -> str:
        return f"{self.step}.{self.metric}"

    @property
    def spec(self) -> str:
        """The form used in URLs: ``pipeline:step.metric[:k=v,k=v]``."""
        seg = ",".join(f"{k}={v}" for k, v in sorted(self.dims.items()))
        return f"{self.pipeline}:{self.name}" + (f":{seg}" if seg else "")

    @property
    def label(self) -> str:
        seg = ",".join(f"{k}={v}" for k, v in sorted(self.dims.items()))
        return f"{self.pipeline} {self.name}" + (f" [{seg}]" if seg else "")


def _num(v) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def sparkline(values: list[float], width: int = 120, height: int = 26) -> str:
    """Points of an SVG polyline (the overview's sparklines need no script)."""
    vals = [v for v in values if v is not None]
    if len(vals) < 2:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    n = len(values)
    pts = []
    for i, v in enumerate(values):
        if v is None:
            continue
        x = i * (width - 2) / max(n - 1, 1) + 1
        y = height - 1 - (v - lo) / span * (height - 2)
        pts.append(f"{x:.1f},{y:.1f}")
    return " ".join(pts)


class DashboardData:
    def __init__(self, env_cfg, *, clock=None):
        self.env = env_cfg
        self.store = ArtifactStore(env_cfg.resolved_artifact_root())
        self.ttl = env_cfg.dashboard.cache_s
        self.clock = clock or (lambda: datetime.now(UTC))
        self._cache: dict = {}
        self._lock = threading.Lock()

    # -- caching ------------------------------------------------------------------------------------------------

    def _cached(self, key, compute, *, ttl: float | None = -1.0):
        """``compute()`` kept for ``ttl`` seconds (default ``dashboard.cache_s``; None: as long as the key is
        among the most recent MAX_ENTRIES, for keys that name their content)."""
        ttl = self.ttl if ttl == -1.0 else ttl
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and (ttl is None or now - hit[0] < ttl):
            return hit[1]
        value = compute()
        with self._lock:
            self._cache[key] = (now, value)
            if len(self._cache) > MAX_ENTRIES:
                for old in sorted(self._cache, key=lambda k: self._cache[k][0])[
                    : len(self._cache) - MAX_ENTRIES
                ]:
                    del self._cache[old]
        return value

    def warm(self) -> None:
        """Read every pipeline's history once (at start-up, in the background): the first page is then fast."""
        for name in self.pipelines():
            try:
                self.overview_row(name)
            except Exception as e:  # a page will show it
                log.warning("warm-up failed", extra={"pipeline": name, "error": f"{type(e).__name__}: {e}"})

    # -- pipelines ----------------------------------------------------------------------------------------------

    def pipelines(self) -> list[str]:
        return list_pipelines()

    def pipeline(self, name: str):
        if name not in self.pipelines():
            raise NotFound(
                f"no pipeline named {name!r}", self.pipelines(), "pipelines are config/pipelines/*.yaml"
            )
        try:
            return self._cached(("cfg", name), lambda: load_pipeline(name, self.env.name))
        except ConfigError as e:
            raise StoreUnavailable(f"the config of {name} does not load: {e}") from e

    # -- metric store -------------------------------------------------------------------------------------------

    def history(self, name: str) -> pd.DataFrame:
        """Every deduplicated metric row of a pipeline in the last HISTORY_DAYS (cached)."""
        cfg = self.pipeline(name)
        today = self.clock().date()

        def read():
            try:
                df = ms.history(
                    self.env,
                    cfg.checks.anomaly.table,
                    name,
                    since=today - timedelta(days=HISTORY_DAYS),
                    until=today + timedelta(days=366),
                )
            except Exception as e:  # unreachable BigQuery, a corrupt or locked DuckDB file, ...
                raise StoreUnavailable(f"the metric store could not be read: {type(e).__name__}: {e}") from e
            if not df.empty:
                df = df.assign(value=df["value"].astype(float))
            return df

        return self._cached(("history", name), read)

    def catalogue(self, name: str) -> list[SeriesKey]:
        """Every series a pipeline has recorded, in step order."""

        def build():
            df = self.history(name)
            if df.empty:
                return []
            keys = df[["step", "metric", "dimensions"]].drop_duplicates()
            order = {s: i for i, s in enumerate(GRAPH.names())}
            out = [
                SeriesKey(name, r.step, r.metric, {k: str(v) for k, v in json.loads(r.dimensions).items()})
                for r in keys.itertuples()
            ]
            return sorted(out, key=lambda k: (order.get(k.step, 99), k.step, k.metric, k.dims_json))

        return self._cached(("catalogue", name, id(self.history(name))), build)

    def _index(self, name: str) -> dict:
        """{(step, metric, dimensions JSON): sorted [(dt, value)]} of a pipeline's history (built once per read)."""
        df = self.history(name)

        def build():
            if df.empty:
                return {}
            out = {}
            for k, g in df.groupby(["step", "metric", "dimensions"], sort=False):
                out[k] = sorted(zip(g["dt"], g["value"].astype(float), strict=True))
            return out

        return self._cached(("index", name, id(df)), build)

    def points(self, key: SeriesKey) -> list[tuple[date, float]]:
        return self._index(key.pipeline).get((key.step, key.metric, key.dims_json), [])

    def dates(self, name: str) -> list[date]:
        df = self.history(name)
        return self._cached(("dates", name, id(df)), lambda: sorted(set(df["dt"])) if not df.empty else [])

    def bands(self, key: SeriesKey, since: date, until: date, detector: str) -> dict:
        """Per day in [since, until]: value, the detector's expected range (from the days before) and whether
        the value is an anomaly. ``detector``: auto (the scan's: weekday, else rolling, or the forecast where the
        pipeline configures it), forecast, or none."""

        def compute():
            cfg = self.pipeline(key.pipeline).checks.anomaly
            pts = self.points(key)
            days = [d for d, _ in pts]
            shown = [(d, v) for d, v in pts if since <= d <= until]
            low: list[float | None] = []
            high: list[float | None] = []
            flags: list[bool] = []
            static = cfg.static.get(key.name) if not key.dims else None
            use_forecast = detector == "forecast" or (
                detector == "auto" and key.name in cfg.forecast.metrics and not key.dims
            )
            fband = {}
            if use_forecast:
                start = since - timedelta(days=cfg.forecast.window)
                fband = forecast.band(
                    [(d, v) for d, v in pts if start <= d <= until],
                    interval=cfg.forecast.interval,
                    min_relative_deviation=cfg.min_relative_deviation,
                )
            for d, v in shown:
                rng = None
                if use_forecast:
                    rng = fband.get(d)
                elif detector != "none":
                    j = bisect.bisect_left(days, d)
                    prior = pts[max(0, j - (7 * cfg.weekday_weeks + 2 * cfg.window)) : j]
                    rng = anomaly.expected_range(prior, d, cfg)
                lo, hi = (rng.low, rng.high) if rng else (None, None)
                out_static = static is not None and not anomaly.static_range(static.min, static.max).contains(
                    v
                )
                low.append(lo)
                high.append(hi)
                flags.append(bool(out_static or (rng is not None and not rng.contains(v))))
            return {
                "dates": [d for d, _ in shown],
                "values": [v for _, v in shown],
                "low": low,
                "high": high,
                "anomaly": flags,
                "detector": "forecast" if use_forecast else detector,
            }

        # keyed by the series' content: a re-read of unchanged history reuses it
        content = hash(tuple(self.points(key)))
        return self._cached(("bands", key.spec, since, until, detector, content), compute, ttl=None)

    # -- artifact store -----------------------------------------------------------------------------------------

    def _read_store(self, key: tuple, read):
        """A cached artifact-store read; a store that cannot be read is StoreUnavailable (the page says so)."""

        def guarded():
            try:
                return read()
            except Exception as e:
                raise StoreUnavailable(
                    f"the artifact store could not be read: {type(e).__name__}: {e}"
                ) from e

        return self._cached(key, guarded)

    def latest(self, name: str) -> dict | None:
        return self._read_store(("latest", name), lambda: self.store.latest(name))

    def publish_records(self, name: str) -> list[dict]:
        return self._read_store(("publishes", name), lambda: self.store.publish_records(name))

    def committed(self, name: str, dataset: str, dt: date):
        def read():
            try:
                return self.store.committed(name, dataset, dt, step=dataset)
            except ArtifactError:
                return None

        return self._cached(("committed", name, dataset, dt), read)

    # -- pages --------------------------------------------------------------------------------------------------

    def overview_row(self, name: str) -> dict:
        """One pipeline's line on the overview: last session, publish, SLA, key metrics, anomalies, gates."""
        cfg = self.pipeline(name)
        now = self.clock()
        row: dict = {"name": name, "description": cfg.description, "owner": cfg.owner, "error": None}
        try:
            latest = self.latest(name)
        except StoreUnavailable as e:
            latest, row["error"] = None, str(e)
        row["published_dt"] = latest and latest.get("dt")
        age_h = None
        if latest and latest.get("published_at"):
            try:
                at = datetime.strptime(latest["published_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                age_h = (now - at).total_seconds() / 3600
            except ValueError:
                pass
        row["age_hours"] = age_h
        sla = self.env.dashboard.sla_hours
        row["sla_hours"] = sla
        row["sla_ok"] = age_h is not None and age_h <= sla
        try:
            hist = self.history(name)
        except StoreUnavailable as e:
            hist, row["error"] = pd.DataFrame(columns=ms.SCHEMA.names), str(e)
        row["metrics"], row["anomalies"], row["failed_gates"] = [], [], []
        if hist.empty:
            row["last_dt"], row["status"] = None, "no runs recorded"
            return row
        published_dates = set()
        if not row["error"]:
            published_dates = {r.get("dt") for r in self.publish_records(name)}
        row.update(self._cached(("overview", name, id(hist)), lambda: self._metric_summary(name, cfg, hist)))
        if row["failed_gates"]:
            row["status"] = "stopped: " + ", ".join(row["failed_gates"])
        elif row["last_dt"] in published_dates:
            row["status"] = "published"
        else:
            row["status"] = "not published"
        return row

    def _metric_summary(self, name: str, cfg, hist: pd.DataFrame) -> dict:
        """The part of an overview row that depends on the metric history only (cached with it)."""
        last = max(hist["dt"])
        day = hist[hist["dt"] == last]
        failed = day[(day["metric"] == "check_failed") & (day["value"] > 0)]
        anomalies = [a.to_dict() for a in anomaly.scan(hist, last, cfg.checks.anomaly)]
        since = last - timedelta(days=SPARK_DAYS - 1)
        recent = hist[hist["dt"] >= since]
        metrics = []
        for metric in cfg.checks.anomaly.metrics:
            step, _, m = metric.partition(".")
            s = ms.series(recent, step, m)
            vals = [s.get((since + timedelta(days=i)).isoformat()) for i in range(SPARK_DAYS)]
            metrics.append(
                {
                    "name": metric,
                    "spec": SeriesKey(name, step, m).spec,
                    "last": s.get(last.isoformat()),
                    "spark": sparkline(vals),
                    "anomaly": any(a["metric"] == metric for a in anomalies),
                }
            )
        return {
            "last_dt": last.isoformat(),
            "failed_gates": sorted({json.loads(d).get("check", "?") for d in failed["dimensions"]}),
            "anomalies": anomalies,
            "metrics": metrics,
        }

    def run_detail(self, name: str, dt: date) -> dict:
        cfg = self.pipeline(name)
        try:
            summary = build_summary(self.store, name, dt, cfg.candidates.shard_count)
        except Exception as e:
            raise StoreUnavailable(f"the artifact store could not be read: {type(e).__name__}: {e}") from e
        metric_dates = []
        try:
            metric_dates = self.dates(name)
        except StoreUnavailable:
            pass
        if not summary["steps"] and dt not in metric_dates:
            known = sorted(
                {d.isoformat() for d in metric_dates} | {r["dt"] for r in self.publish_records(name)}
            )
            raise NotFound(f"{name} has no run on {dt}", known[-60:], "dates with a run (the latest 60)")
        cfg = self.pipeline(name)
        steps = []
        for spec in GRAPH.steps():
            step = spec.name
            entry = summary["steps"].get(step)
            # the resource class a step runs with in the cloud (the pipeline's `resources:` may override it)
            resource = spec.resource_class(cfg) + (" (sharded)" if spec.sharded else "")
            if entry is None:
                steps.append(
                    {"name": step, "state": "not committed", "resource": resource, "duration_s": None}
                )
                continue
            timings = entry.get("timings") or {}
            duration = _num(timings.get("total_s")) or _num(timings.get("max_shard_s"))
            steps.append(
                {
                    "name": step,
                    "state": "committed",
                    "resource": resource,
                    "committed_at": entry.get("committed_at"),
                    "duration_s": duration,
                    "location": self.store.display(entry["location"]) if entry.get("location") else None,
                    "shards": entry.get("shards_committed")
                    and f"{entry['shards_committed']}/{entry['shard_count']}",
                    "run_id": entry.get("run_id"),
                }
            )
        gates = []
        for gate in GRAPH.gates():
            title = f"{gate.name} (after {gate.guards})"
            c = self.committed(name, gate.dataset, dt)
            if c is None:
                gates.append({"title": title, "ran": False, "results": []})
                continue
            try:
                doc = c.read_json(gate.file)
            except ArtifactError as e:
                gates.append({"title": title, "ran": True, "results": [], "error": str(e)})
                continue
            gates.append(
                {
                    "title": title,
                    "ran": True,
                    "passed": c.metadata.get("passed"),
                    "results": doc.get("results", []),
                    "stats": doc.get("stats") or {},
                }
            )
        failures = [
            {"gate": g["title"], "check": r.get("name"), "message": _one_line(r.get("message"))}
            for g in gates
            for r in g["results"]
            if r.get("status") == "fail"
        ]
        day_metrics = []
        try:
            hist = self.history(name)
            day = hist[hist["dt"] == dt] if not hist.empty else hist
            day_metrics = [
                {
                    "step": r.step,
                    "metric": r.metric,
                    "dims": "" if r.dimensions == "{}" else r.dimensions,
                    "value": r.value,
                }
                for r in day.itertuples()
            ]
        except StoreUnavailable:
            pass
        report = summary.get("report")
        return {
            "pipeline": name,
            "dt": dt,
            "summary": summary,
            "steps": steps,
            "gates": gates,
            "failures": failures,
            "model": summary.get("model"),
            "published": summary["published"]["this_date_published"],
            "report": report,
            "artifact_root": self.store.root_url,
            "metrics": day_metrics,
        }

    def report_html(self, name: str, dt: date) -> bytes:
        self.pipeline(name)
        path = self.store.report_location(name, dt)
        try:
            with self.store.fs.open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(
                f"no run report for {name} {dt}", [], f"reco report --pipeline {name} --date {dt}"
            ) from None

    # -- model shift --------------------------------------------------------------------------------------------

    def score_histograms(self, name: str, dt: date, bins: int = 40) -> dict:
        """Score distributions of the publish of ``dt`` and the publish before it (a sample of each)."""
        records = self.publish_records(name)
        current = next((r for r in records if r["dt"] == dt.isoformat()), None)
        previous = self.store.previous_publish(name, dt) if current else None

        def sample(rec) -> np.ndarray:
            path = (rec.get("files") or {}).get("recommendations.parquet") if rec else None
            if not path:
                return np.array([])
            url = self.store.display(self.store.resolve(path))  # records hold paths relative to the root
            con = self._duckdb()
            try:
                rows = con.execute(
                    "SELECT score FROM read_parquet($url) USING SAMPLE reservoir(50000 ROWS) REPEATABLE (7)",
                    {"url": url},
                ).fetchall()
            except Exception as e:
                log.warning("score sample unreadable", extra={"url": url, "error": str(e)})
                return np.array([])
            finally:
                con.close()
            return np.array([r[0] for r in rows], dtype=float)

        def compute():
            a, b = sample(current), sample(previous)
            both = [x for x in (a, b) if len(x)]
            if not both:
                return None
            lo = min(float(x.min()) for x in both)
            hi = max(float(x.max()) for x in both)
            edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)

            def density(x):
                if not len(x):
                    return [None] * bins
                h, _ = np.histogram(x, bins=edges, density=True)
                return [float(v) for v in h]

            return {
                "x": [float(v) for v in (edges[:-1] + edges[1:]) / 2],
                "series": [
                    {"label": f"{dt} (n={len(a)})", "values": density(a)},
                    {
                        "label": f"{previous['dt']} previous publish (n={len(b)})"
                        if previous
                        else "no previous publish",
                        "values": density(b),
                    },
                ],
            }

        return self._cached(("scores", name, dt), compute)

    def _duckdb(self):

        # one thread: these are point lookups, and pages run side by side
        con = duckdb.connect(config={"threads": 1})
        register_fsspec(con, self.store.display(self.store.root))
        return con

    # -- recommendations browser --------------------------------------------------------------------------------

    def export_dates(self, name: str) -> list[str]:
        return [r["dt"] for r in self.publish_records(name)]

    def user_view(self, name: str, dt: date, user: str, history_n: int = 20) -> dict:
        export = self.committed(name, "export", dt)
        agg = self.committed(name, "interactions", dt)
        if export is None:
            raise NotFound(
                f"{name} has no export on {dt}", self.export_dates(name)[-60:], "dates with an export"
            )
        con = self._duckdb()
        try:
            recs = con.execute(
                "SELECT item_id, rank, score, source FROM read_parquet($url) WHERE user_id = $user ORDER BY rank",
                {"url": self.store.display(export.path("recommendations.parquet")), "user": user},
            ).df()
            hist = pd.DataFrame(columns=["item_id", "weight"])
            known_user = not recs.empty
            if agg is not None:
                users_url = self.store.display(agg.path("users.parquet"))
                found = con.execute(
                    "SELECT user_idx FROM read_parquet($url) WHERE user_id = $user",
                    {"url": users_url, "user": user},
                ).fetchall()
                if found:
                    known_user = True
                    hist = con.execute(
                        "SELECT i.item_id, x.weight FROM read_parquet($inter) x "
                        "JOIN read_parquet($items) i ON i.item_idx = x.item_idx "
                        "WHERE x.user_idx = $idx ORDER BY x.weight DESC, i.item_id LIMIT $n",
                        {
                            "inter": self.store.display(agg.path("interactions.parquet")),
                            "items": self.store.display(agg.path("items.parquet")),
                            "idx": int(found[0][0]),
                            "n": history_n,
                        },
                    ).df()
            if not known_user:
                url = self.store.display(export.path("recommendations.parquet"))

                def users_of_export():
                    first = con.execute(
                        "SELECT DISTINCT user_id FROM read_parquet($url) ORDER BY user_id LIMIT 10",
                        {"url": url},
                    ).fetchall()
                    n = con.execute(
                        "SELECT count(DISTINCT user_id) FROM read_parquet($url)", {"url": url}
                    ).fetchone()
                    return [r[0] for r in first], n[0]

                sample, count = self._cached(("export-users", name, dt), users_of_export)
                raise NotFound(
                    f"no user {user!r} in {name}'s export of {dt}",
                    sample,
                    f"{count:,} users have recommendations on {dt}; the first ones",
                )
        finally:
            con.close()
        return {
            "user": user,
            "history": hist.to_dict("records"),
            "recommendations": recs.to_dict("records"),
        }

    def item_view(self, name: str, dt: date, item: str) -> dict:
        export = self.committed(name, "export", dt)
        if export is None:
            raise NotFound(
                f"{name} has no export on {dt}", self.export_dates(name)[-60:], "dates with an export"
            )
        if "related.parquet" not in export.marker.get("files", {}):
            return {"item": item, "related": [], "note": "this export has no related items"}
        url = self.store.display(export.path("related.parquet"))
        con = self._duckdb()
        try:
            rel = con.execute(
                "SELECT related_item_id, rank, score FROM read_parquet($url) WHERE item_id = $item ORDER BY rank",
                {"url": url, "item": item},
            ).df()
            if rel.empty:
                sample = con.execute(
                    "SELECT DISTINCT item_id FROM read_parquet($url) ORDER BY item_id LIMIT 10", {"url": url}
                ).fetchall()
                raise NotFound(
                    f"no item {item!r} in {name}'s related items of {dt}",
                    [r[0] for r in sample],
                    "items with related items; the first ones",
                )
        finally:
            con.close()
        return {"item": item, "related": rel.to_dict("records")}

    def sample_users(self, name: str, dt: date, n: int = 5) -> list[str]:
        export = self.committed(name, "export", dt)
        if export is None:
            return []
        con = self._duckdb()
        try:
            return [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT user_id FROM read_parquet($url) WHERE source = 'personal' ORDER BY user_id LIMIT $n",
                    {"url": self.store.display(export.path("recommendations.parquet")), "n": n},
                ).fetchall()
            ]
        finally:
            con.close()


def _one_line(text) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= 240 else s[:237] + "..."
