"""Watching running pipelines: query progress, late rows, lag."""
