"""Run the Hypothesis exploration of `llamaswap.verification` on a user's scenario.

Settings are fixed for reproducibility: no example database (a check must not depend
on earlier runs), no deadline, one bug at a time, no explain phase. Without a seed
the run is derandomized, so the same config always gives the same verdict; `--seed`
picks another deterministic run. Generation is bounded by `examples`, so the verdict
never depends on time; shrinking is time-boxed (see `_shrink_time_box`), so only how
far a failing example is shrunk does.

The machine is subclassed here (`verification` is shared with the property suite):

- it counts the examples generated before the first failure (shrink runs come after),
  and marks the run failed when a step or the liveness teardown raises.

Hypothesis replays the shrunk failing example last, so the log of the last machine
built is that example. Hypothesis's own report is silenced: the caller reports.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.errors import HypothesisException
from hypothesis.reporting import with_reporter
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from llamaswap.verification import (
    ExplorationStats,
    InvariantViolation,
    Scenario,
    build_exploration,
)

DEFAULT_EXAMPLES = 200
STEPS_PER_EXAMPLE = 50
SHRINK_SECONDS = 5


@dataclass
class Exploration:
    """One run: what it covered and the failure it ended on, if any."""

    stats: ExplorationStats
    failure: Exception | None = None
    log: list[str] = field(default_factory=list)
    generated: int = 0  # examples generated; the rest of stats.examples ran while shrinking

    @property
    def violation(self) -> InvariantViolation | None:
        return _find_violation(self.failure)


def _find_violation(error: BaseException | None) -> InvariantViolation | None:
    """The InvariantViolation in `error`, also inside an exception group (flaky reports)."""
    if isinstance(error, InvariantViolation):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _find_violation(inner)
            if found is not None:
                return found
    return None


def _is_failure(error: BaseException | None) -> bool:
    """A real failure, as opposed to Hypothesis's own control flow (overruns, rejections)."""
    return isinstance(error, Exception) and not isinstance(error, HypothesisException)


@dataclass
class _Counter:
    """Counts the examples generated before the first failure (shrinking comes after)."""

    built: int = 0
    failed: bool = False


def _bounded(
    machine: type[RuleBasedStateMachine], counter: _Counter
) -> type[RuleBasedStateMachine]:
    class CheckedExploration(machine):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            if not counter.failed:
                counter.built += 1
            super().__init__()

        def teardown(self) -> None:
            if _is_failure(sys.exc_info()[1]):
                counter.failed = True  # a step failed: report it, not a teardown consequence
                return
            try:
                super().teardown()
            except Exception:
                counter.failed = True
                raise

    CheckedExploration.__name__ = machine.__name__
    return CheckedExploration


@contextmanager
def _shrink_time_box(seconds: int) -> Iterator[None]:
    """Stop shrinking after `seconds`, keeping the smallest failing example found so far.

    Hypothesis has no setting for this; its engine reads the module constant
    `MAX_SHRINKING_SECONDS` (300) when shrinking starts. Without that constant (a
    future Hypothesis), shrinking is simply not time-boxed.
    """
    try:
        from hypothesis.internal.conjecture import engine
    except ImportError:  # pragma: no cover - depends on Hypothesis internals
        yield
        return
    saved = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if not isinstance(saved, int):  # pragma: no cover - depends on Hypothesis internals
        yield
        return
    engine.MAX_SHRINKING_SECONDS = seconds
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = saved


def explore(
    scenario: Scenario,
    *,
    examples: int = DEFAULT_EXAMPLES,
    seed_value: int | None = None,
    steps: int = STEPS_PER_EXAMPLE,
    shrink_seconds: int = SHRINK_SECONDS,
) -> Exploration:
    stats = ExplorationStats()
    counter = _Counter()
    machine = _bounded(build_exploration(scenario, stats), counter)
    if seed_value is not None:
        machine = seed(seed_value)(machine)
    config = settings(
        max_examples=examples,
        stateful_step_count=steps,
        derandomize=seed_value is None,
        database=None,
        deadline=None,
        report_multiple_bugs=False,
        print_blob=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    outcome = Exploration(stats)
    with with_reporter(lambda _message: None), _shrink_time_box(shrink_seconds):
        try:
            run_state_machine_as_test(machine, settings=config)
        except Exception as error:  # any exception from the scheduler is a finding
            outcome.failure = error
    outcome.log = list(stats.last_log)
    outcome.generated = counter.built
    return outcome
