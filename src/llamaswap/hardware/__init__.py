"""The machine llamaswap runs on: what it is (`snapshot`) and how busy it is (`sampler`)."""

from .sampler import PerformanceMonitor
from .snapshot import detect

__all__ = ["PerformanceMonitor", "detect"]
