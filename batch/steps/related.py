"""related: the model -> similar items per available item (candidate source "related", the "related items"
frame).

Items are split into shards by a stable hash of their id (StepContext.mine). Unavailable items are never
related. Output: dataset ``related``, one partition per shard: ``part.parquet`` with item_id,
related_item_id, rank, score; the export step writes them into ``related.parquet``, loaded into
``<export table>_related``.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from batch import datasets
from batch.context import StepContext
from batch.datasets import MODEL, RELATED
from batch.graph import Export, step
from batch.progress import progress

RELATED_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("related_item_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
    ]
)


@step(
    name="related",
    reads=(MODEL,),
    writes=RELATED,
    sharded=True,
    resources="compute",
    source="related",
    exports=(Export("related.parquet", ("item_id", "related_item_id", "rank", "score"), "_related"),),
    description="model -> related items (sharded)",
)
def run(ctx: StepContext) -> dict:
    """Related items (item-to-item) for the available items of this shard."""
    cfg = ctx.pipeline
    started = time.perf_counter()
    model_art = datasets.model(ctx)
    model = model_art.load()
    items = model_art.items()
    unavailable = items.loc[~items["available"], "item_idx"].to_numpy(np.int32)
    item_ids = items["item_id"].to_numpy()
    targets = items[items["available"]]
    targets = targets[ctx.mine(targets["item_id"].to_numpy())]
    target_idx = targets["item_idx"].to_numpy(np.int32)
    n = cfg.candidates.related_n
    rows = 0
    with ctx.store.writer(ctx.name, RELATED, ctx.session_date, shard=ctx.shard, run_id=ctx.run_id) as w:
        with w.parquet_writer("part.parquet", RELATED_SCHEMA) as out:
            step = cfg.candidates.batch_size
            for start in progress(
                range(0, len(target_idx), step),
                desc="related items",
                unit="batch",
                disable=None if ctx.show_progress else True,
            ):
                batch = target_idx[start : start + step]
                ids, scores = model.similar_items(batch, n, filter_items=unavailable)
                valid = ids >= 0
                rank = np.broadcast_to(np.arange(1, n + 1, dtype=np.int32), ids.shape)
                src_col = np.repeat(item_ids[batch], n).reshape(ids.shape)
                out.write_table(
                    pa.table(
                        {
                            "item_id": pa.array(src_col[valid], pa.string()),
                            "related_item_id": pa.array(item_ids[ids[valid]], pa.string()),
                            "rank": pa.array(rank[valid], pa.int32()),
                            "score": pa.array(scores[valid], pa.float32()),
                        },
                        schema=RELATED_SCHEMA,
                    )
                )
                rows += int(valid.sum())
        timings = {"total_s": round(time.perf_counter() - started, 3)}
        counts = {"items": int(len(target_idx)), "rows": rows}
        w.metadata.update(
            {
                "run": ctx.run_record(),
                "model_version": model_art.version,
                "counts": counts,
                "timings": timings,
                "shard": list(ctx.shard),
            }
        )
    return {"counts": counts, "timings": timings}
