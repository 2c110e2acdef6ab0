"""Checks that decide what gets published: the publish check here; data checks and model gates beside it."""
