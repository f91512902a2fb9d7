"""Everything outward is generated from the spec: a copy of the process spec with one more
state and transition yields the machine, the diagram, the typed enum, the state table, the
metric series, the event payload and the UI's legend, with no code edited.

The new state here is `paused` (a ready process that an operator suspends), reached from
`ready` on a new `pause` event, with its own tag colour and a `resume` back to ready.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from llamaswap.fsm import build_machine, parse_spec, shipped_spec_paths
from llamaswap.fsm.codegen import names_namespace
from llamaswap.fsm.diagram import render
from llamaswap.fsm.inert import InertModel
from llamaswap.fsm.view import spec_view
from llamaswap.http.metrics import Metrics
from llamaswap.http.routes.events import state_change
from llamaswap.runtime.events import ProcessStateChanged


def process_spec_document() -> dict[str, Any]:
    [path] = [p for p in shipped_spec_paths() if p.name == "process.fsm.yaml"]
    return yaml.safe_load(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def with_a_paused_state() -> dict[str, Any]:
    doc = copy.deepcopy(process_spec_document())
    doc["tags"]["suspended"] = {"description": "kept in memory, not serving", "colour": "#123456"}
    doc["events"]["pause"] = {"by": "router", "command": "pause", "description": "suspend"}
    doc["events"]["resume"] = {"by": "router", "description": "carry on"}
    doc["states"]["paused"] = {
        "description": "suspended by an operator",
        "tags": ["holds_resources", "suspended"],
        "ignore": ["pause"],
    }
    doc["transitions"] += [
        {"event": "pause", "from": "ready", "to": "paused", "description": "suspend it"},
        {"event": "resume", "from": "paused", "to": "ready"},
        {"event": "exited", "from": "paused", "to": "failed", "reason": "died paused ({code})"},
        {"event": "stop", "from": "paused", "to": "stopping", "do": ["terminate"]},
        {"event": "shut_down", "from": "paused", "to": "shutting_down", "do": ["terminate"]},
    ]
    return doc


def test_one_more_state_reaches_every_generated_adapter() -> None:
    spec = parse_spec(with_a_paused_state(), source="paused.fsm.yaml")

    machine = build_machine(spec)(start_value="ready", model=InertModel(spec))
    machine.send("pause")
    assert machine.current_state_value == "paused"
    machine.send("resume")
    assert machine.current_state_value == "ready"

    assert "ready -> paused [label=pause]" in render(spec, "dot").decode()
    assert "    ready --> paused : pause" in render(spec, "mermaid").decode()
    table = render(spec, "table").decode()
    assert "| `paused` | holds_resources, suspended | pause | suspended by an operator |" in table

    names = names_namespace(spec)
    assert names["ProcessState"].PAUSED == "paused"
    assert names["ProcessEvent"].PAUSE == "pause"
    assert names["ProcessState"].PAUSED in names["PROCESS_HOLDS_RESOURCES"]
    assert names["PROCESS_SUSPENDED"] == frozenset({names["ProcessState"].PAUSED})

    metrics = Metrics(spec)
    paused = ProcessStateChanged("m", "ready", "paused", "pause", "an operator paused it")  # type: ignore[arg-type]
    metrics.observe(paused)
    body, _ = metrics.exposition(None)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("llamaswap_model_state", (("model", "m"), ("state", "paused")))] == 1
    assert samples[("llamaswap_model_state", (("model", "m"), ("state", "ready")))] == 0
    assert samples[("llamaswap_model_transitions_total", (("event", "pause"), ("model", "m")))] == 1

    assert state_change(paused) | {"at": 0} == {
        "model": "m",
        "from": "ready",
        "to": "paused",
        "event": "pause",
        "reason": "an operator paused it",
        "at": 0,
    }

    legend = {state["name"]: state for state in spec_view(spec)["states"]}
    assert legend["paused"]["colour"] == "#123456"
    assert legend["paused"]["description"] == "suspended by an operator"
    assert legend["paused"]["commands"] == ["unload"]
    assert "pause" in legend["ready"]["commands"]


def test_the_shipped_names_module_is_what_the_specs_generate() -> None:
    """`llamaswap diagram --check` guards this in `make lint`; here for a plain pytest run."""
    from llamaswap.fsm import load_spec
    from llamaswap.fsm.codegen import names_module_path, names_source

    specs = [load_spec(path) for path in shipped_spec_paths()]
    assert names_module_path().read_text(encoding="utf-8") == names_source(specs)
