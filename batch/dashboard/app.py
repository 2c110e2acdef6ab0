"""The dashboard's web application (FastAPI + Jinja2, server-side pages; uPlot, bundled, draws the charts).

Pages (all read-only, all state in the query string so a URL can be shared):

- ``/``                                 overview: every pipeline's last session, publish age vs SLA, key metrics
- ``/metrics?s=PIPELINE:STEP.METRIC[:k=v]&since=&until=&detector=``  metric explorer
- ``/runs/PIPELINE/DATE``              run detail: steps, gates, failures, artifacts, run report
- ``/models/PIPELINE?date=``           model shift: overlap@k, score distributions, coverage and entropy
- ``/recs/PIPELINE?date=&user=&item=`` recommendations browser
- ``/healthz`` (liveness) and ``/readyz`` (readiness) answer without IAP.

Everything can be served under a path prefix (``base_path``: ``/dashboard`` behind the shared IAP Ingress).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from batch.dashboard.data import DashboardData, NotFound, SeriesKey, StoreUnavailable
from batch.dashboard.iap import HEADER, IapError, IapVerifier

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
DETECTORS = ("auto", "forecast", "none")
DEFAULT_DAYS = 90
MAX_SERIES = 8

# Request values are checked against these before they are used anywhere (they never reach SQL text).
_PIPELINE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TOKEN = r"[A-Za-z0-9_@%.\-]{1,64}"
_SPEC = re.compile(
    rf"^([a-z][a-z0-9_]{{0,62}}):([a-z_]{{1,32}})\.({_TOKEN})(?::({_TOKEN}={_TOKEN}(?:,{_TOKEN}={_TOKEN})*))?$"
)
_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


class BadRequest(Exception):
    pass


def parse_spec(text: str) -> SeriesKey:
    m = _SPEC.match(text or "")
    if not m:
        raise BadRequest(f"series {text!r}: expected PIPELINE:STEP.METRIC or PIPELINE:STEP.METRIC:key=value")
    dims = dict(kv.split("=", 1) for kv in m.group(4).split(",")) if m.group(4) else {}
    return SeriesKey(m.group(1), m.group(2), m.group(3), dims)


def parse_day(text: str | None, what: str) -> date | None:
    if text in (None, ""):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{what} {text!r}: expected a date as YYYY-MM-DD") from None


def check_pipeline(name: str) -> str:
    if not _PIPELINE.match(name):
        raise BadRequest(f"pipeline {name!r}: lower case letters, digits and _ only")
    return name


def check_id(text: str | None, what: str) -> str | None:
    if text in (None, ""):
        return None
    if not _ID.match(text):
        raise BadRequest(f"{what} {text!r}: letters, digits and _ . : @ - only (at most 128)")
    return text


def create_app(
    env_cfg, *, base_path: str = "", data: DashboardData | None = None, warm: bool = False
) -> FastAPI:
    """The application; ``warm`` reads every pipeline's history in the background right away."""
    base = "/" + base_path.strip("/") if base_path.strip("/") else ""
    data = data or DashboardData(env_cfg)
    audience = env_cfg.dashboard.iap_audience
    verifier = IapVerifier(audience, env_cfg.dashboard.iap_certs_url) if audience else None
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(base=base, env_name=env_cfg.name, fmt=_fmt, iap=bool(verifier))
    templates.env.filters["tojson_compact"] = _script_json
    app = FastAPI(title="reco dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.data = data
    if warm:
        threading.Thread(target=data.warm, name="dashboard-warm-up", daemon=True).start()

    def page(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    # -- errors -------------------------------------------------------------------------------------------------

    @app.exception_handler(NotFound)
    async def not_found(request: Request, e: NotFound):
        return page(request, "error.html", 404, title="Not found", message=e.what, known=e.known, hint=e.hint)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, e: BadRequest):
        return page(request, "error.html", 400, title="Bad request", message=str(e), known=[], hint="")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        msg = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        return page(request, "error.html", 400, title="Bad request", message=msg, known=[], hint="")

    @app.exception_handler(StoreUnavailable)
    async def unavailable(request: Request, e: StoreUnavailable):
        log.warning("store unavailable", extra={"path": request.url.path, "error": str(e)})
        return page(request, "error.html", 503, title="Store unavailable", message=str(e), known=[], hint="")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        log.exception("dashboard page failed", extra={"path": request.url.path})
        return page(
            request, "error.html", 500, title="Error", message=f"{type(e).__name__}: {e}", known=[], hint=""
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        if e.status_code == 404:
            return page(
                request,
                "error.html",
                404,
                title="Not found",
                message=f"no page at {request.url.path}",
                known=[f"{base}/", f"{base}/metrics", *(f"{base}/runs/{p}" for p in data.pipelines())],
                hint="pages",
            )
        return page(
            request,
            "error.html",
            e.status_code,
            title=str(e.status_code),
            message=str(e.detail),
            known=[],
            hint="",
        )

    # -- IAP ----------------------------------------------------------------------------------------------------

    @app.middleware("http")
    async def require_iap(request: Request, call_next):
        if verifier is not None and request.url.path not in (
            "/healthz",
            "/readyz",
            f"{base}/healthz",
            f"{base}/readyz",
        ):
            try:
                claims = verifier.verify(request.headers.get(HEADER))
            except IapError as e:
                return JSONResponse({"error": str(e)}, status_code=401)
            request.state.user = claims.get("email")
        return await call_next(request)

    # -- health -------------------------------------------------------------------------------------------------

    def healthz():
        return {"status": "ok"}

    def readyz():
        try:
            data.store.fs.exists(data.store.root)
            data.pipelines()
        except Exception as e:
            return JSONResponse({"status": "not ready", "error": f"{type(e).__name__}: {e}"}, status_code=503)
        return {"status": "ready", "env": env_cfg.name}

    for prefix in {"", base}:
        app.add_api_route(f"{prefix}/healthz", healthz, methods=["GET"])
        app.add_api_route(f"{prefix}/readyz", readyz, methods=["GET"])

    # -- pages --------------------------------------------------------------------------------------------------

    r = APIRouter()

    @r.get("/", response_class=HTMLResponse)
    def overview(request: Request):
        rows = []
        for name in data.pipelines():
            try:
                rows.append(data.overview_row(name))
            except StoreUnavailable as e:
                rows.append(
                    {"name": name, "error": str(e), "metrics": [], "anomalies": [], "failed_gates": []}
                )
        return page(request, "overview.html", rows=rows)

    @r.get("/metrics", response_class=HTMLResponse)
    def explorer(
        request: Request,
        s: Annotated[list[str] | None, Query(max_length=200)] = None,
        pipeline: str | None = Query(default=None, max_length=63),
        step: str | None = Query(default=None, max_length=32),
        segment: str | None = Query(default=None, max_length=64),
        since: str | None = Query(default=None, max_length=10),
        until: str | None = Query(default=None, max_length=10),
        detector: str = Query(default="auto", max_length=10),
    ):
        if detector not in DETECTORS:
            raise BadRequest(f"detector {detector!r}: one of {', '.join(DETECTORS)}")
        keys = [parse_spec(x) for x in (s or [])[:MAX_SERIES]]
        for k in keys:
            data.pipeline(k.pipeline)  # 404 listing the pipelines
        pipe = check_pipeline(pipeline) if pipeline else (keys[0].pipeline if keys else None)
        pipe = pipe or (data.pipelines() or [None])[0]
        if pipe:
            data.pipeline(pipe)
        if step and not re.fullmatch(r"[a-z_]{1,32}", step):
            raise BadRequest(f"step {step!r}: lower case letters and _ only")
        segment = check_id(segment, "segment") if segment and "=" not in segment else segment
        if segment and not re.fullmatch(rf"{_TOKEN}(={_TOKEN})?", segment):
            raise BadRequest(f"segment {segment!r}: key or key=value")
        since_d, until_d = parse_day(since, "since"), parse_day(until, "until")
        catalogue, store_error = [], None
        try:
            catalogue = data.catalogue(pipe) if pipe else []
        except StoreUnavailable as e:
            store_error = str(e)
        if not keys and catalogue:
            cfg = data.pipeline(pipe)
            wanted = cfg.checks.anomaly.metrics[:1]
            keys = [k for k in catalogue if k.name in wanted and not k.dims][:1] or catalogue[:1]
        last = None
        try:
            last = max((d for k in {k.pipeline for k in keys} for d in data.dates(k)[-1:]), default=None)
        except StoreUnavailable as e:
            store_error = str(e)
        until_d = until_d or last or date.today()
        since_d = since_d or until_d - timedelta(days=DEFAULT_DAYS - 1)
        if since_d > until_d:
            raise BadRequest(f"since {since_d} is after until {until_d}")
        chart, series_info = None, []
        if keys and not store_error:
            chart, series_info = _chart(data, keys, since_d, until_d, detector)
        steps = sorted({k.step for k in catalogue})
        listed = [
            k
            for k in catalogue
            if (not step or k.step == step)
            and (not segment or any(segment in (kk, f"{kk}={vv}") for kk, vv in k.dims.items()))
        ]
        segments = sorted({f"{kk}={vv}" for k in catalogue for kk, vv in k.dims.items()})
        return page(
            request,
            "explorer.html",
            keys=keys,
            specs=[k.spec for k in keys],
            pipeline=pipe,
            pipelines=data.pipelines(),
            step=step or "",
            steps=steps,
            segment=segment or "",
            segments=segments,
            listed=listed,
            since=since_d.isoformat(),
            until=until_d.isoformat(),
            detector=detector,
            detectors=DETECTORS,
            chart=chart,
            series_info=series_info,
            store_error=store_error,
        )

    @r.get("/runs/{pipeline}", response_class=HTMLResponse)
    def runs(request: Request, pipeline: str):
        check_pipeline(pipeline)
        data.pipeline(pipeline)
        dates = data.dates(pipeline)
        records = {r["dt"]: r for r in data.publish_records(pipeline)}
        hist = data.history(pipeline)
        failed = set()
        if not hist.empty:
            f = hist[(hist["metric"] == "check_failed") & (hist["value"] > 0)]
            failed = set(f["dt"])
        rows = [
            {"dt": d.isoformat(), "published": d.isoformat() in records, "failed": d in failed}
            for d in sorted(dates, reverse=True)[:120]
        ]
        return page(request, "runs.html", pipeline=pipeline, rows=rows)

    @r.get("/runs/{pipeline}/{day}", response_class=HTMLResponse)
    def run_detail(request: Request, pipeline: str, day: str):
        check_pipeline(pipeline)
        dt = parse_day(day, "date")
        return page(request, "run.html", run=data.run_detail(pipeline, dt))

    @r.get("/runs/{pipeline}/{day}/report")
    def run_report(pipeline: str, day: str):
        check_pipeline(pipeline)
        dt = parse_day(day, "date")
        return Response(data.report_html(pipeline, dt), media_type="text/html")

    @r.get("/models/{pipeline}", response_class=HTMLResponse)
    def model_shift(
        request: Request,
        pipeline: str,
        day: str | None = Query(default=None, alias="date", max_length=10),
        since: str | None = Query(default=None, max_length=10),
        until: str | None = Query(default=None, max_length=10),
    ):
        check_pipeline(pipeline)
        cfg = data.pipeline(pipeline)
        records = data.publish_records(pipeline)
        dt = parse_day(day, "date")
        if dt is None:
            dt = date.fromisoformat(records[-1]["dt"]) if records else None
        elif dt.isoformat() not in {x["dt"] for x in records}:
            raise NotFound(
                f"{pipeline} has no publish on {dt}", [x["dt"] for x in records][-60:], "published dates"
            )
        until_d = parse_day(until, "until") or (data.dates(pipeline) or [date.today()])[-1]
        since_d = parse_day(since, "since") or until_d - timedelta(days=DEFAULT_DAYS - 1)
        k = cfg.checks.model.overlap.k
        groups = [
            (
                "overlap@k with the previous model (model gate)",
                [SeriesKey(pipeline, "train", "check_value", {"check": "overlap"})],
            ),
            (
                "score shift: KS statistic vs the previous publish",
                [SeriesKey(pipeline, "train", "check_value", {"check": "score_shift"})],
            ),
            (
                "coverage",
                [
                    SeriesKey(pipeline, "export", "catalog_coverage"),
                    SeriesKey(pipeline, "export", "user_coverage"),
                    SeriesKey(pipeline, "train", f"coverage@{k}"),
                ],
            ),
            ("entropy of the recommended items (bits)", [SeriesKey(pipeline, "train", f"entropy@{k}")]),
        ]
        charts = []
        for title, keys in groups:
            present = [key for key in keys if data.points(key)]
            chart = _chart(data, present, since_d, until_d, "none")[0] if present else None
            charts.append({"title": title, "chart": chart, "specs": [key.spec for key in present]})
        scores = data.score_histograms(pipeline, dt) if dt else None
        return page(
            request,
            "models.html",
            pipeline=pipeline,
            dt=dt and dt.isoformat(),
            dates=[x["dt"] for x in records][-60:],
            charts=charts,
            scores=scores,
            since=since_d.isoformat(),
            until=until_d.isoformat(),
        )

    @r.get("/recs/{pipeline}", response_class=HTMLResponse)
    def recs(
        request: Request,
        pipeline: str,
        day: str | None = Query(default=None, alias="date", max_length=10),
        user: str | None = Query(default=None, max_length=128),
        item: str | None = Query(default=None, max_length=128),
    ):
        check_pipeline(pipeline)
        data.pipeline(pipeline)
        user, item = check_id(user, "user"), check_id(item, "item")
        dates = data.export_dates(pipeline)
        dt = parse_day(day, "date")
        if dt is None:
            latest = data.latest(pipeline)
            dt = date.fromisoformat(latest["dt"]) if latest else None
        if dt is None:
            raise NotFound(
                f"{pipeline} has published nothing yet", [], f"reco run --pipeline {pipeline} --date D"
            )
        user_view = data.user_view(pipeline, dt, user) if user else None
        item_view = data.item_view(pipeline, dt, item) if item else None
        return page(
            request,
            "recs.html",
            pipeline=pipeline,
            dt=dt.isoformat(),
            dates=dates[-60:],
            user=user or "",
            item=item or "",
            user_view=user_view,
            item_view=item_view,
            examples=[] if user else data.sample_users(pipeline, dt),
        )

    @r.get("/pipelines/{pipeline}")
    def pipeline_home(pipeline: str):
        check_pipeline(pipeline)
        data.pipeline(pipeline)
        return RedirectResponse(f"{base}/metrics?pipeline={pipeline}", status_code=303)

    app.include_router(r, prefix=base)
    app.mount(f"{base}/static", StaticFiles(directory=str(HERE / "static")), name="static")
    return app


def _chart(data: DashboardData, keys: list[SeriesKey], since: date, until: date, detector: str):
    """The JSON a uPlot chart is drawn from: one x axis (days), per series its values, band and anomalies."""
    days = [since + timedelta(days=i) for i in range((until - since).days + 1)]
    index = {d: i for i, d in enumerate(days)}
    series, info = [], []
    for key in keys:
        b = data.bands(key, since, until, detector)
        cols = {name: [None] * len(days) for name in ("values", "low", "high", "anomaly")}
        for j, d in enumerate(b["dates"]):
            i = index[d]
            cols["values"][i] = b["values"][j]
            cols["low"][i] = b["low"][j]
            cols["high"][i] = b["high"][j]
            cols["anomaly"][i] = b["values"][j] if b["anomaly"][j] else None
        n_anom = sum(1 for v in b["anomaly"] if v)
        series.append({"label": key.label, "spec": key.spec, **cols})
        info.append(
            {
                "label": key.label,
                "spec": key.spec,
                "points": len(b["dates"]),
                "anomalies": [d.isoformat() for d, a in zip(b["dates"], b["anomaly"], strict=True) if a],
                "count": n_anom,
                "detector": b["detector"],
                "last": b["values"][-1] if b["values"] else None,
            }
        )
    x = [int((d - date(1970, 1, 1)).total_seconds()) for d in days]
    return {"x": x, "series": series}, info


def _script_json(value) -> Markup:
    """JSON for a <script type="application/json"> block: "<" escaped, so no value can close the element."""
    text = json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)
