"""The exploration scenario for a user's config: the policy as written, judged by the YAML.

The policy is built with the capacity guard off: `check` asks whether the groups or
matrix alone keep the declared resources within the machine, because every set of
models they let run over capacity is a place where the guard would have to step in
at runtime. The ground truth (groups, matrix sets, resources) comes from the config
through `llamaswap.scheduling.from_config`, like the server's policy itself; the
matrix's is `MatrixTruth`, which does not share the solver's pruning.
"""

from __future__ import annotations

from llamaswap.config import Config
from llamaswap.scheduling.from_config import build_policy, groups_of, model_rules, resources_of
from llamaswap.verification import Scenario
from llamaswap.verification.matrix_truth import MatrixTruth


def scenario_from_config(config: Config) -> Scenario:
    router = config.routing.router
    resources = resources_of(config)
    matrix = config.routing.matrix
    matrix_sets = MatrixTruth(matrix.program) if router == "matrix" and matrix else None
    return Scenario(
        rules=model_rules(config),
        policy=build_policy(config, guard=False),
        max_wait=config.routing.max_wait_seconds,
        groups=groups_of(config) if router == "group" else None,
        matrix_sets=matrix_sets,
        resources=resources,
        check_capacity=resources is not None,
    )
