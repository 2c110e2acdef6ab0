"""The pipeline on a non-local fsspec URL: the code path `gs://` takes in the cloud, with fsspec's memory store."""

from datetime import date
from pathlib import Path

import fsspec
import pyarrow.parquet as pq

from batch.config import load_environment, load_pipeline
from batch.context import StepContext
from batch.execute import run_step
from batch.graph import GRAPH
from batch.storage import new_run_id


def test_whole_pipeline_on_an_fsspec_url(small_data, reco_home):
    root = "memory://reco-artifacts"
    env = load_environment("local").model_copy(update={"artifact_root": root})
    pipeline = load_pipeline("demo", "local", {"model.params.iterations": "2", "model.params.factors": "8"})
    run_id = new_run_id()
    memory = fsspec.filesystem("memory")
    try:
        results = {}
        for step in GRAPH.steps():
            for i in range(pipeline.candidates.shard_count) if step.sharded else [0]:
                ctx = StepContext(
                    pipeline=pipeline,
                    env=env,
                    session_date=date(2026, 11, 21),
                    shard_index=i,
                    shard_count=pipeline.candidates.shard_count,
                    run_id=run_id,
                    show_progress=False,
                )
                results[step.name] = run_step(step, ctx)
        assert results["publish"]["published"]
        url = ctx.store.latest("demo")["files"]["recommendations.parquet"]
        assert url.startswith("memory://")
        with memory.open(url) as f:
            assert pq.read_table(f).num_rows == results["export"]["stats"]["rows"] > 0
        # the artifacts went to the URL, not to the local artifact root
        assert not (Path(reco_home) / "artifacts" / "demo").exists()
    finally:
        if memory.exists("/reco-artifacts"):
            memory.rm("/reco-artifacts", recursive=True)
