"""Every spec in `spec/` is fuzzed against a tiny independent interpreter of its YAML.

One Hypothesis stateful test is generated per spec file: random event sequences,
from a random start state, go to the generated python-statemachine class and to
`step()` below, which reads the raw YAML. They must agree on every state and every
rejection, so a new transition in a spec is fuzzed with no code change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from statemachine.exceptions import TransitionNotAllowed

from llamaswap.fsm import build_machine, load_spec, shipped_spec_paths
from llamaswap.fsm.inert import InertModel

UNKNOWN_EVENT = "no_such_event"


def step(raw: dict[str, Any], state: str, event: str, guards: dict[str, bool]) -> str | None:
    """The reference semantics: the target of the first matching transition whose guard
    holds (no `to`: it stays), or None."""
    for transition in raw["transitions"]:
        sources = transition["from"]
        sources = [sources] if isinstance(sources, str) else sources
        if transition["event"] != event or state not in sources:
            continue
        if "cond" in transition and not guards[transition["cond"]]:
            continue
        return str(transition.get("to", state))
    return None


def make_agreement_test(path: Path) -> type:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    machine_class = build_machine(load_spec(path))
    states = sorted(raw["states"])
    events = [*sorted({t["event"] for t in raw["transitions"]}), UNKNOWN_EVENT]
    guard_names = sorted({t["cond"] for t in raw["transitions"] if "cond" in t})

    class SpecAgreement(RuleBasedStateMachine):
        @initialize(
            start=st.sampled_from(states),
            guards=st.fixed_dictionaries({name: st.booleans() for name in guard_names}),
        )
        def begin(self, start: str, guards: dict[str, bool]) -> None:
            self.guards = guards
            model = InertModel(machine_class.fsm_spec, guards)
            self.machine = machine_class(start_value=start, model=model)
            self.expected = start

        @rule(event=st.sampled_from(events))
        def send(self, event: str) -> None:
            target = step(raw, self.expected, event, self.guards)
            try:
                self.machine.send(event)
            except TransitionNotAllowed:
                assert target is None, f"{event} from {self.expected} was rejected"
            else:
                assert target is not None, f"{event} from {self.expected} was accepted"
                self.expected = target

        @invariant()
        def same_state(self) -> None:
            if hasattr(self, "machine"):
                assert self.machine.current_state_value == self.expected

    SpecAgreement.__name__ = f"{raw['name'].title()}SpecAgreement"
    test_case: type = SpecAgreement.TestCase
    test_case.settings = settings(
        max_examples=100, stateful_step_count=30, derandomize=True, deadline=None
    )
    return test_case


SPEC_PATHS = shipped_spec_paths()
assert SPEC_PATHS, "no specs found in spec/"
globals().update(
    {f"Test{path.name.split('.')[0].title()}Spec": make_agreement_test(path) for path in SPEC_PATHS}
)
