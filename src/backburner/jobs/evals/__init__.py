"""Evaluations: golden datasets, quality metrics and scoring (pure; the worker runs them)."""
