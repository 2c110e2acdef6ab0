"""The forecasting detector: trend plus weekly seasonality, with a prediction interval as the expected band.

Beside static, rolling and weekday (batch/checks/anomaly.py) for metrics that grow or shrink while they swing
over the week (events per day, users). Model: statsmodels' ETS (exponential smoothing state space) with additive
error, additive damped trend and additive weekly seasonality (fixed smoothing constants, heuristic initial
states), run over the previous ``window`` days. Its prediction
interval for the day judged (coverage ``interval``, 0.9999 by default) is the expected range.

Past anomalies must not teach the model that anomalies are normal: before fitting, a robust STL decomposition
(statsmodels, period 7) finds points whose residual is beyond ``CLEAN_Z`` robust standard deviations and replaces
them by STL's trend + season there. A level shift that persists is absorbed by the trend within days, as it
should be: the new level becomes the expected one.

Why statsmodels and not Prophet: statsmodels is a ~10 MB wheel on numpy/scipy/pandas (already here) and fits a
four-month daily series in tens of milliseconds; Prophet pulls in cmdstanpy and a compiled Stan model (hundreds
of MB installed) and takes far longer per fit, for no gain on one point a day with one seasonality.

Pure: functions of a history and a date. No I/O, no config loading.
"""

from __future__ import annotations

import warnings
from datetime import date, timedelta

import numpy as np
import pandas as pd

from batch.checks.expected import MAD_SCALE, Expected

DETECTOR = "forecast (ETS trend + weekly season)"
SEASON = 7
CLEAN_Z = 4.0  # residual (robust sd) beyond which a past point is treated as an anomaly and not learnt from


def _daily(history: list[tuple[date, float]], end: date) -> pd.Series | None:
    """The history on a daily calendar ending on ``end``; short gaps interpolated, None when too sparse."""
    s = pd.Series({pd.Timestamp(d): float(v) for d, v in history}).sort_index()
    idx = pd.date_range(s.index[0], pd.Timestamp(end), freq="D")
    s = s.reindex(idx)
    if s.isna().mean() > 0.2:
        return None
    return s.interpolate(limit_direction="both")


def clean(y: np.ndarray) -> np.ndarray:
    """Past anomalies replaced by the robust STL fit (trend + season) at their place."""
    from statsmodels.tsa.seasonal import STL

    fit = STL(y, period=SEASON, robust=True).fit()
    resid = fit.resid
    scale = MAD_SCALE * float(np.median(np.abs(resid - np.median(resid))))
    if scale <= 0:
        return y
    out = y.copy()
    bad = np.abs(resid - np.median(resid)) > CLEAN_Z * scale
    out[bad] = (fit.trend + fit.seasonal)[bad]
    return out


# Smoothing constants of the ETS model (level, trend, season, trend damping). Estimating them by maximum
# likelihood costs about a second a series on this machine, for values that barely move from one day to the next;
# fixed constants in the usual ranges make a fit ~20 ms, and the interval still comes from the model's own
# one-step error variance (estimated on the cleaned history).
SMOOTHING = {
    "smoothing_level": 0.2,
    "smoothing_trend": 0.02,
    "smoothing_seasonal": 0.1,
    "damping_trend": 0.95,
}


def _fit(y: np.ndarray):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = pd.Series(y, index=pd.RangeIndex(len(y)))  # positions: the prediction frame needs an index
    model = ETSModel(
        y,
        error="add",
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=SEASON,
        initialization_method="heuristic",
    )
    with warnings.catch_warnings():  # chatter on short or flat series; the smoothed states are still usable
        warnings.simplefilter("ignore")
        return model.smooth([SMOOTHING[n] for n in model.param_names])


def forecast_range(
    history: list[tuple[date, float]],
    today: date,
    *,
    window: int = 112,
    min_history: int = 28,
    interval: float = 0.9999,
    min_relative_deviation: float = 0.05,
) -> Expected | None:
    """Expected range of today's value from the previous days (never today); None with too little history."""
    prior = sorted((d, v) for d, v in history if today - timedelta(days=window) <= d < today)
    if len(prior) < min_history:
        return None
    last = prior[-1][0]
    y = _daily(prior, last)
    if y is None or len(y) < 2 * SEASON + 2:
        return None
    values = y.to_numpy()
    if np.ptp(values) == 0:  # flat: nothing to fit; the relative floor is the band
        center = float(values[-1])
        half = min_relative_deviation * abs(center)
        return Expected(center - half, center + half, center, DETECTOR)
    res = _fit(clean(values))
    steps = (today - last).days
    frame = res.get_prediction(start=len(values), end=len(values) + steps - 1).summary_frame(
        alpha=1 - interval
    )
    row = frame.iloc[-1]
    center, low, high = float(row["mean"]), float(row["pi_lower"]), float(row["pi_upper"])
    half = max((high - low) / 2, min_relative_deviation * abs(center))
    return Expected(center - half, center + half, center, DETECTOR)


def band(
    history: list[tuple[date, float]], *, interval: float = 0.9999, min_relative_deviation: float = 0.05
) -> dict[date, Expected]:
    """An expected band for every day of a series from ONE fit: each day's one-step-ahead prediction (which
    uses only the days before it) +- the interval's half width. For charts: a per-day refit is too slow for a
    page; the daily scan (``forecast_range``) refits on the previous days only."""
    pts = sorted(history)
    if len(pts) < 4 * SEASON:
        return {}
    y = _daily(pts, pts[-1][0])
    if y is None or np.ptp(y.to_numpy()) == 0:
        return {}
    values = y.to_numpy()
    cleaned = clean(values)
    res = _fit(cleaned)
    fitted = np.asarray(res.fittedvalues)
    # the scale of one-step errors, robust to the anomalies the chart is meant to show
    errors = cleaned - fitted
    sd = MAD_SCALE * float(np.median(np.abs(errors - np.median(errors))))
    from scipy.stats import norm  # ~0.6 s to import: only where a band is drawn

    z = float(norm.ppf(0.5 + interval / 2))
    out = {}
    known = {d for d, _ in pts}
    for ts, center in zip(y.index[2 * SEASON :], fitted[2 * SEASON :], strict=True):
        d = ts.date()
        if d in known:
            half = max(z * sd, min_relative_deviation * abs(float(center)))
            out[d] = Expected(float(center) - half, float(center) + half, float(center), DETECTOR)
    return out
