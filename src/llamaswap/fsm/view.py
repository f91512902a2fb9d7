"""A JSON view of a spec, for clients that draw lifecycles (the web UI's badges, colours
and buttons), so nothing outside the spec lists states.

`commands` per state are the operator actions (`events.<e>.command`, e.g. load and
unload) whose event has a transition there: a button for an ignored or impossible
event would do nothing.
"""

from __future__ import annotations

from typing import Any

from .diagram import state_colour
from .spec import Spec


def spec_view(spec: Spec) -> dict[str, Any]:
    """Everything a client needs to show and act on machines of this spec."""
    commands = spec.commands()
    return {
        "name": spec.name,
        "description": spec.description,
        "initial": spec.initial,
        "final": list(spec.final),
        "states": [
            {
                "name": name,
                "description": state.description,
                "tags": list(state.tags),
                "colour": state_colour(spec, name),
                "commands": [c for c, event in commands.items() if spec.allows(name, event)],
            }
            for name, state in spec.states.items()
        ],
        "tags": {
            tag: {
                "description": t.description,
                "colour": t.colour,
                "states": list(spec.tagged(tag)),
            }
            for tag, t in spec.tags.items()
        },
        "events": [
            {
                "name": event,
                "by": spec.event(event).by,
                "command": spec.event(event).command,
                "description": spec.event(event).description,
            }
            for event in spec.events
        ],
    }
