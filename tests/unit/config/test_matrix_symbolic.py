"""Matrices past llama-swap's old 10,000-combination limit load, like llama-swap's since #960."""

from __future__ import annotations

import time

import yaml

from llamaswap.config import format_config
from llamaswap.scheduling.from_config import build_policy
from tests.unit.config.helpers import assert_problem, load
from tests.unit.matrix.configs import big_matrix


def product_config(dimensions: int, choices: int, selector: str = "") -> str:
    """llama-swap's "matrix symbolic large" selector test: `target & (11 models) & ...`."""
    lines = ["models:", '  target: {cmd: "echo ${PORT}"}']
    groups = []
    for dimension in range(dimensions):
        names = [f"model-{dimension}-{choice}" for choice in range(choices)]
        lines += [f'  {name}: {{cmd: "echo ${{PORT}}"}}' for name in names]
        groups.append("(" + " | ".join(names) + ")")
    lines += ["matrix:", "  sets:", f'    large: "target & {" & ".join(groups)}"']
    if selector:
        lines += ["selectors:", f"  public: {selector}"]
    return "\n".join(lines) + "\n"


def test_a_matrix_of_24576_combinations_loads_and_routes_within_a_second() -> None:
    started = time.perf_counter()
    config = load(big_matrix())
    evict = build_policy(config).evict_for("embed-b", {"chat-7b", "embed-a", "tts-b"})
    seconds = time.perf_counter() - started
    assert evict == ("embed-a",)
    assert seconds < 1.0  # a loose sanity bound: it takes a few tens of milliseconds
    matrix = config.routing.matrix
    assert matrix is not None
    assert [(s.name, s.combinations) for s in matrix.sets] == [("desk", 24576), ("heavy", 1)]


def test_ten_to_the_thirtieth_combinations_are_counted_not_expanded() -> None:
    config = load(product_config(30, 10))
    matrix = config.routing.matrix
    assert matrix is not None
    assert matrix.sets[0].combinations == 10**30
    assert matrix.sets[0].alternatives is None
    policy = build_policy(config)
    assert policy.evict_for("model-7-3", {"target", "model-7-9", "model-8-1"}) == ("model-7-9",)


def test_the_normalised_output_counts_big_sets_and_lists_small_ones() -> None:
    printed = yaml.safe_load(format_config(load(big_matrix())))
    desk, heavy = printed["routing"]["matrix"]["sets"]
    assert desk["combinations"] == 24576 and "alternatives" not in desk
    assert heavy == {
        "name": "heavy",
        "dsl": "big70",
        "alternatives": [["big70"]],
        "yamlPath": "routing.router.settings.matrix.sets.heavy",
    }


def test_spillover_targets_in_one_alternative_of_a_big_matrix() -> None:
    selector = "{strategy: spillover, targets: [target, model-0-0]}"
    config = load(product_config(4, 11, selector))  # 14,641 combinations
    assert config.selectors["public"].resolved_targets == ["target", "model-0-0"]


def test_spillover_targets_that_never_share_an_alternative_of_a_big_matrix() -> None:
    selector = "{strategy: spillover, targets: [model-0-0, model-0-1]}"
    assert_problem(
        product_config(4, 11, selector),
        "selectors.public.targets",
        "must all appear together in one expanded matrix set",
    )
