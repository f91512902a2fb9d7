"""Exploring routing scenarios with Hypothesis: the property suite and `llamaswap check`."""

from .machine import ExplorationStats, build_exploration
from .scenario import Scenario
from .world import InvariantViolation, World

__all__ = ["ExplorationStats", "InvariantViolation", "Scenario", "World", "build_exploration"]
