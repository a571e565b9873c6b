"""Projections: pure folds of the log into the state processors and users read."""

from agentledger.projections.task_state import SubtaskState, TaskState, evolve, fold

__all__ = ["SubtaskState", "TaskState", "evolve", "fold"]
