"""`make bench`: the daily batch (reco run) against a hand-written implicit batch and Spark MLlib ALS.

Entry point: ``python -m bench.run [--sizes 1M,10M] [--quick]``; see docs/benchmarks.md for the method.
"""
