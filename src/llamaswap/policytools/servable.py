"""Can every model be served at all, by the policy the server really runs?

Here the capacity guard is on: it is what makes a model unservable, when the model
cannot fit beside models the policy never evicts (persistent groups). Each model is
requested on a fresh scheduler, alone and after each persistent model (and all of
them) has loaded, with every swap played to completion; a rejection is a finding.
"""

from __future__ import annotations

from dataclasses import replace

from llamaswap.config import Config
from llamaswap.scheduling import Policy
from llamaswap.scheduling.from_config import groups_of, model_rules, resources_of

from .findings import Finding, needs_of
from .simulation import Seconds, SimulationResult, policy_for, run_simulation
from .trace import TraceRequest


def persistent_models(config: Config) -> list[str]:
    if config.routing.router != "group":
        return []
    return [model for group in groups_of(config) if group.persistent for model in group.members]


def starting_points(config: Config, target: str) -> list[tuple[str, ...]]:
    """What may already run when `target` is requested: nothing, each persistent model, all."""
    others = [m for m in persistent_models(config) if m != target]
    points: list[tuple[str, ...]] = [(), *((m,) for m in others)]
    if len(others) > 1:
        points.append(tuple(others))
    return points


def _play(config: Config, policy: Policy, models: tuple[str, ...]) -> SimulationResult:
    rules = {model: replace(rule, ttl=0.0) for model, rule in model_rules(config).items()}
    trace = [TraceRequest(float(i), model, 0.0) for i, model in enumerate(models)]
    return run_simulation(
        rules,
        policy,
        trace,
        load=Seconds(0.0),
        stop=Seconds(0.0),
        max_wait=config.routing.max_wait_seconds,
    )


def _words(result: SimulationResult) -> tuple[str, ...]:
    lines = []
    for number, outcome in enumerate(result.requests, start=1):
        if outcome.granted is not None:
            lines.append(f"{number}. a request for {outcome.model} is served")
        else:
            reason = outcome.error or "it is never served"
            lines.append(f"{number}. a request for {outcome.model} fails: {reason}")
    return tuple(lines)


def unservable_findings(config: Config) -> list[Finding]:
    """One finding per model the server's policy refuses, from the first state that fails."""
    policy = policy_for(config)
    resources = resources_of(config)
    findings = []
    for target in sorted(config.models):
        for start in starting_points(config, target):
            result = _play(config, policy, (*start, target))
            outcome = result.requests[-1]
            if outcome.granted is not None:
                continue
            running = sorted(m for m in start if result.served(m))
            beside = f" beside {', '.join(running)}" if running else ""
            models = (target, *running)
            findings.append(
                Finding(
                    kind="unservable",
                    message=(
                        f"{target} can never be served{beside}: "
                        f"{outcome.error or 'it is never served'}"
                    ),
                    models=models,
                    needs=needs_of(resources, models),
                    capacity=dict(resources.capacity) if resources else {},
                    rules=tuple(dict.fromkeys(policy.rule_for(target, m) for m in running)),
                    sequence=_words(result),
                    source="servability",
                )
            )
            break
    return findings
