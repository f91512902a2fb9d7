"""Every spec validation error names the file, the transition and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llamaswap.fsm import SpecError, build_machine, load_spec, parse_spec


def base() -> dict[str, Any]:
    return {
        "name": "toy",
        "description": "a toy",
        "initial": "off",
        "final": ["gone"],
        "states": {"off": {}, "on": {}, "gone": {}},
        "transitions": [
            {"event": "switch_on", "from": "off", "to": "on"},
            {"event": "switch_off", "from": "on", "to": "off"},
            {"event": "remove", "from": ["off", "on"], "to": "gone"},
        ],
    }


def problems_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(doc, source="toy.fsm.yaml")
    assert str(info.value).startswith("toy.fsm.yaml: ")
    return info.value.problems


def test_base_is_valid_and_builds() -> None:
    machine = build_machine(parse_spec(base()))
    assert machine.__name__ == "ToyMachine"
    assert machine().current_state_value == "off"


def test_unknown_target_state_names_the_transition() -> None:
    doc = base()
    doc["transitions"][0]["to"] = "onn"
    assert problems_of(doc) == ["transition 0 (switch_on: off -> onn): unknown state 'onn'"]


def test_unknown_source_state() -> None:
    doc = base()
    doc["transitions"][2]["from"] = ["off", "of"]
    [problem] = problems_of(doc)
    assert "transition 2 (remove: off|of -> gone)" in problem
    assert "unknown state 'of'" in problem


def test_unknown_initial_and_final() -> None:
    doc = base()
    doc["initial"] = "nope"
    doc["final"] = ["gone", "never"]
    found = problems_of(doc)
    assert "initial: unknown state 'nope'" in found
    assert "final: unknown state 'never'" in found


def test_duplicate_state_event_pair_is_nondeterministic() -> None:
    doc = base()
    doc["transitions"].append({"event": "switch_on", "from": "off", "to": "gone"})
    [problem] = problems_of(doc)
    assert "transitions 0, 3: state 'off' has event 'switch_on' more than once" in problem
    assert "all but the last need a cond" in problem
    assert "deterministic" in problem


def test_a_guarded_transition_may_share_its_state_and_event() -> None:
    doc = base()
    doc["transitions"][0]["cond"] = "wired"
    doc["transitions"].append({"event": "switch_on", "from": "off", "to": "gone"})
    assert len(parse_spec(doc).outgoing("off", "switch_on")) == 2


def test_a_transition_without_to_stays_in_its_state() -> None:
    doc = base()
    doc["transitions"].append({"event": "poke", "from": "on", "do": ["blink"]})
    spec = parse_spec(doc)
    [poke] = spec.outgoing("on", "poke")
    assert poke.internal and poke.target_from("on") == "on" and poke.actions == ("blink",)


def test_tags_ignores_and_events_are_checked() -> None:
    doc = base()
    doc["states"]["on"]["tags"] = ["lit", "nosuch"]
    doc["tags"] = {"lit": {"description": "light is on"}}
    doc["states"]["off"]["ignore"] = ["switch_on"]
    doc["events"] = {"switch_on": {"by": "user", "command": "press"}}
    found = problems_of(doc)
    assert "state 'on': tag 'nosuch' is not declared under tags" in found
    assert "state 'off': event 'switch_on' is both ignored and has a transition" in found
    assert "event 'switch_off' is used but not declared under events" in found


def test_a_reason_template_names_identifiers_only() -> None:
    doc = base()
    doc["transitions"][0]["reason"] = "code {code} and {bad-name}"
    [problem] = problems_of(doc)
    assert "reason field {bad-name} must be an identifier" in problem


def test_event_named_like_a_state() -> None:
    doc = base()
    doc["transitions"][2]["event"] = "gone"
    [problem] = problems_of(doc)
    assert "event 'gone' is named like a state" in problem
    assert "transition 2" in problem


def test_unreachable_state() -> None:
    doc = base()
    doc["states"]["island"] = {}
    doc["transitions"].append({"event": "sink", "from": "island", "to": "gone"})
    assert "state 'island' is unreachable from initial state 'off'" in problems_of(doc)


def test_transition_out_of_a_final_state() -> None:
    doc = base()
    doc["transitions"].append({"event": "revive", "from": "gone", "to": "off"})
    [problem] = problems_of(doc)
    assert problem == "transition 3 (revive: gone -> off): leaves final state 'gone'"


def test_trap_state_without_outgoing_transition() -> None:
    doc = base()
    doc["states"]["stuck"] = {}
    doc["transitions"].append({"event": "get_stuck", "from": "on", "to": "stuck"})
    assert "state 'stuck' is not final but has no outgoing transition" in problems_of(doc)


def test_missing_field_names_the_transition_and_field() -> None:
    doc = base()
    del doc["transitions"][1]["from"]
    [problem] = problems_of(doc)
    assert problem.startswith("transition 1 (event 'switch_off') field 'from'")
    assert "required" in problem.lower()


def test_unknown_key_is_rejected() -> None:
    doc = base()
    doc["transitions"][0]["guard"] = "x"
    [problem] = problems_of(doc)
    assert "transition 0 (event 'switch_on') field 'guard'" in problem


def test_bad_identifier_and_reserved_name() -> None:
    doc = base()
    doc["transitions"][0]["event"] = "Switch-On"
    doc["transitions"][1]["event"] = "send"
    found = problems_of(doc)
    assert any("event 'Switch-On' must be a lower-case identifier" in p for p in found)
    assert any("event 'send' would shadow StateMachine.send" in p for p in found)


def test_all_problems_are_reported_together() -> None:
    doc = base()
    doc["transitions"][0]["to"] = "x"
    doc["transitions"][1]["event"] = "on"
    doc["initial"] = "y"
    assert len(problems_of(doc)) == 3


def test_load_spec_reports_yaml_errors_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.fsm.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)
    assert "not valid YAML" in str(info.value)


def test_load_spec_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "toy.fsm.yaml"
    path.write_text(yaml.safe_dump(base()))
    spec = load_spec(path)
    assert spec.source == str(path)
    [transition] = spec.outgoing("on", "switch_off")
    assert transition.target == "off"


def test_not_a_mapping() -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_spec(["a", "list"], source="x.fsm.yaml")
