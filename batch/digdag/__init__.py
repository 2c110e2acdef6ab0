"""Digdag: parse and validate .dig workflows (workflow.py), run them here (local.py), check them (check.py),
and drive a Digdag server over its REST API (client.py, backfill.py)."""
