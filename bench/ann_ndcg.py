"""Next-day nDCG@10 of the demo pipeline with candidates.method=ann against exact, on the same generated data.

Both runs use session date S (the generator's last day minus one), so the generator's last day is a holdout
neither saw (bench/evaluate.py). The demo catalogue is below the ANN's exact_below threshold, so the ANN run
forces the IVF index (kind, nlist, nprobe) to measure the approximation rather than the exact fallback.

    python -m bench.ann_ndcg [--users 5000 --items 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

from batch.config import load_pipeline
from batch.context import Window
from bench.evaluate import Holdout, read_recs

END = date(2026, 11, 21)
SESSION = END - timedelta(days=1)
ANN = [
    "candidates.method=ann",
    "candidates.ann.kind=ivf_flat",
    "candidates.ann.nlist=64",
    "candidates.ann.nprobe=32",  # half the cells: the default nprobe (>= 64) would probe them all here
    "candidates.ann.exact_below=0",
]


def reco(home: Path, *args: str) -> str:
    env = {**os.environ, "RECO_HOME": str(home), "RECO_LOG_FORMAT": "text"}
    cmd = [sys.executable, "-c", "import sys; from batch.cli import main; sys.exit(main())", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        last = [
            ln for ln in done.stderr.splitlines() if ln.startswith("reco: error")
        ] or done.stderr.splitlines()[-1:]
        raise SystemExit(f"reco {' '.join(args[:1])} exited {done.returncode}: {' '.join(last)}")
    return done.stdout


def run(home: Path, sets: list[str]) -> str:
    out = reco(
        home,
        "run",
        "--pipeline",
        "demo",
        "--date",
        SESSION.isoformat(),
        *[a for s in sets for a in ("--set", s)],
    )
    summary = json.loads(out)
    latest = summary["published"]["latest"]
    assert latest and latest["dt"] == SESSION.isoformat(), "the run did not publish"
    return latest["files"]["recommendations.parquet"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--items", type=int, default=2000)
    args = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method, sets in (("exact", []), ("ann", ANN)):
            home = Path(tmp) / method
            reco(
                home,
                "data",
                "generate",
                "--pipeline",
                "demo",
                "--users",
                str(args.users),
                "--items",
                str(args.items),
            )
            results[method] = run(home, sets)
        pipeline = load_pipeline("demo")
        w = Window.for_session(SESSION, pipeline.aggregate.lookback_days, 1, pipeline.source.timezone)
        holdout = Holdout(str(Path(tmp) / "exact" / "warehouse.duckdb"), "demo_events", w.start, w.end)
        scores = {m: holdout.score(read_recs(path)) for m, path in results.items()}
    exact, ann = scores["exact"]["ndcg@10"], scores["ann"]["ndcg@10"]
    print(f"next-day nDCG@10 (demo, {args.users} users x {args.items} items, session {SESSION})")
    print(f"  exact {exact:.4f}   ann {ann:.4f}   ratio {ann / exact:.3f} (target >= 0.98)")
    print(f"  users evaluated: {scores['exact']['users_evaluated']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
