"""The Hypothesis run behind `check`: catches planted bugs, reports the first one, stays bounded."""

from __future__ import annotations

import time

from hypothesis.internal.conjecture import engine

from llamaswap.policytools.checker import exploration_finding
from llamaswap.policytools.exploration import explore
from llamaswap.scheduling import Group, GroupPolicy, ModelRules, Request, Scheduler
from llamaswap.verification import Scenario

RULES = {"a": ModelRules(), "b": ModelRules(), "c": ModelRules(ttl=5)}
GROUPS = (Group("pair", ("a", "b")), Group("keep", ("c",), exclusive=False, persistent=True))


class EvictsBusyModels(Scheduler):
    """Bug: forgets that requests are in flight when choosing to swap."""

    def _any_busy(self, models: tuple[str, ...]) -> bool:
        return False


class CrashesOnB(Scheduler):
    """Bug: an exception that is no invariant at all."""

    def submit(self, request: Request, now: float) -> None:
        if request.model == "b":
            raise RuntimeError("boom")
        super().submit(request, now)


def scenario(factory: type[Scheduler] = Scheduler) -> Scenario:
    policy = GroupPolicy(GROUPS)
    return Scenario(RULES, policy, groups=GROUPS, scheduler_factory=factory)


def test_a_planted_bug_is_reported_as_the_step_that_broke_the_promise() -> None:
    box = engine.MAX_SHRINKING_SECONDS
    started = time.perf_counter()
    run = explore(scenario(EvictsBusyModels), examples=200, shrink_seconds=1)
    assert time.perf_counter() - started < 10  # shrinking is time-boxed...
    assert box == engine.MAX_SHRINKING_SECONDS  # ...and Hypothesis's own box restored
    assert run.violation is not None
    # the step's violation, not the liveness teardown that would follow it
    assert run.violation.kind == "busy eviction"
    finding = exploration_finding(run, scenario().policy, None)
    assert finding.kind == "busy eviction"
    assert finding.source == "exploration"
    assert finding.sequence[-1].startswith("=> busy eviction: swap to ")
    assert any("is served" in line for line in finding.sequence)
    assert any(line.endswith(" is ready (healthy)") for line in finding.sequence)
    assert run.generated < run.stats.examples  # shrinking ran after generation


def test_an_unexpected_exception_is_a_finding_too() -> None:
    run = explore(scenario(CrashesOnB), examples=100, shrink_seconds=1)
    assert isinstance(run.failure, RuntimeError) and run.violation is None
    finding = exploration_finding(run, scenario().policy, None)
    assert finding.kind == "error"
    assert finding.message == "the scheduler raised RuntimeError: boom"
    assert finding.sequence[-1] == "=> RuntimeError: boom"
    assert any("request #" in line and "for b arrives" in line for line in finding.sequence)


def test_a_correct_scheduler_passes_and_generation_is_counted() -> None:
    run = explore(scenario(), examples=40)
    assert run.failure is None
    assert run.generated >= 40 and run.stats.steps > run.generated
