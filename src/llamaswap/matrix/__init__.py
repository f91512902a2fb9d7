"""llama-swap's matrix sets: the DSL, its compiled program and the symbolic solver.

Its own package because the config (validation, selectors), the scheduler (the
eviction policy) and the policy tools (ground truth) all use it; it imports nothing
else from llamaswap, so the scheduler stays free of the config package.
"""

from .dsl import DslError, compile_sets, parse
from .program import LISTED_COMBINATIONS, MatrixProgram, ProgramSet, compile_program, listed_program
from .solver import Decision, can_contain_all, evictions, first_set_containing, solve

__all__ = [
    "LISTED_COMBINATIONS",
    "Decision",
    "DslError",
    "MatrixProgram",
    "ProgramSet",
    "can_contain_all",
    "compile_program",
    "compile_sets",
    "evictions",
    "first_set_containing",
    "listed_program",
    "parse",
    "solve",
]
