"""The worker: claim loop, job context, retry decisions, response tracker."""

from backburner.worker.loop import Worker
from backburner.worker.tracker import ResponseTracker

__all__ = ["ResponseTracker", "Worker"]
