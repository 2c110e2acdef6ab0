"""The same batch on Spark MLlib: ALS (implicitPrefs) + recommendForAllUsers, on ``local[2]``.

Reads the events exported to Parquet (the same rows as the warehouse table, with integer user/item codes
added during the untimed preparation, so Spark need not index strings), keeps the window, sums the event
weights per (user, item), fits ALS (rank, maxIter, regParam, alpha as the pipeline) and writes the top N per
user (user, item, rank, score) to Parquet. Prints a JSON line of phase timings.
"""

from __future__ import annotations

import argparse
import json
import time

t0 = time.perf_counter()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", required=True, help="Parquet: user_code, item_code, event_type, ts")
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--max-iter", type=int, default=15)
    p.add_argument("--reg", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("-n", type=int, default=50)
    p.add_argument("--driver-memory", default="8g")
    a = p.parse_args()

    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    timings = {}
    t = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench-als")
        .config("spark.driver.memory", a.driver_memory)
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(a.out + ".checkpoints")
    timings["session_s"] = time.perf_counter() - t

    t = time.perf_counter()
    weight = (
        F.when(F.col("event_type") == "view", 1.0)
        .when(F.col("event_type") == "like", 4.0)
        .when(F.col("event_type") == "bookmark", 6.0)
    )
    events = (
        spark.read.parquet(a.events)
        .where((F.col("ts") >= F.to_timestamp(F.lit(a.start))) & (F.col("ts") < F.to_timestamp(F.lit(a.end))))
        .where(F.col("user_code").isNotNull() & F.col("item_code").isNotNull())
        .withColumn("weight", weight)
        .where(F.col("weight").isNotNull())
    )
    ratings = events.groupBy("user_code", "item_code").agg(F.sum("weight").alias("rating")).cache()
    n_ratings = ratings.count()
    timings["aggregate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    als = ALS(
        rank=a.rank,
        maxIter=a.max_iter,
        regParam=a.reg,
        alpha=a.alpha,
        implicitPrefs=True,
        seed=a.seed,
        userCol="user_code",
        itemCol="item_code",
        ratingCol="rating",
        coldStartStrategy="drop",
    )
    model = als.fit(ratings)
    model.userFactors.count()  # fit is lazy in parts; make sure it has happened
    timings["fit_s"] = time.perf_counter() - t

    t = time.perf_counter()
    recs = model.recommendForAllUsers(a.n)
    flat = recs.select("user_code", F.posexplode("recommendations").alias("pos", "rec")).select(
        "user_code",
        F.col("rec.item_code").alias("item_code"),
        (F.col("pos") + 1).alias("rank"),
        F.col("rec.rating").alias("score"),
    )
    flat.write.mode("overwrite").parquet(a.out)
    timings["recommend_write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    spark.stop()
    print(json.dumps({"ratings": n_ratings, "timings": {k: round(v, 3) for k, v in timings.items()}}))


if __name__ == "__main__":
    main()
