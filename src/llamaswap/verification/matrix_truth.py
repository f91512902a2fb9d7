"""A matrix config's ground truth, judged apart from the solver that routes by it.

The solver prunes and reorders projections to choose evictions fast; a bug there must
not also hide from the check. So this answers "may these models run together?" the
plain way: small matrices are listed (a subset test per alternative); bigger ones are
projected onto the models asked about, keeping every distinct projection of every
node (at most 2^k for k models) and pruning nothing.
"""

from __future__ import annotations

from llamaswap.matrix import MatrixProgram
from llamaswap.matrix.program import AND, LEAF

LISTED_LIMIT = 4096  # combinations over all sets, repeats included


class MatrixTruth:
    """Membership in a compiled matrix: is a running set inside one alternative?"""

    def __init__(self, program: MatrixProgram, listed_limit: int = LISTED_LIMIT) -> None:
        self.program = program
        total = sum(program.combinations(s.root) for s in program.sets)
        self.listed: tuple[frozenset[str], ...] | None = None
        if total <= listed_limit:
            self.listed = tuple(
                alternative
                for s in program.sets
                for alternative in program.alternatives(s.root, listed_limit) or ()
            )

    def allows(self, models: frozenset[str]) -> bool:
        if self.listed is not None:
            return any(models <= alternative for alternative in self.listed)
        memo: dict[int, set[frozenset[str]]] = {}
        return any(models in self._projections(s.root, models, memo) for s in self.program.sets)

    def _projections(
        self, root: int, models: frozenset[str], memo: dict[int, set[frozenset[str]]]
    ) -> set[frozenset[str]]:
        """The parts of `models` each alternative under `root` holds."""
        program = self.program
        for index in program.post_order(root):
            if index in memo:
                continue
            kind = program.kinds[index]
            if kind == LEAF:
                model = program.leaf_models[index]
                memo[index] = {frozenset({model}) & models}
            elif kind == AND:
                parts: set[frozenset[str]] = {frozenset()}
                for child in program.children[index]:
                    parts = {left | right for left in parts for right in memo[child]}
                memo[index] = parts
            else:
                memo[index] = set().union(*(memo[child] for child in program.children[index]))
        return memo[root]
