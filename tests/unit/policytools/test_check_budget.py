"""The default `check` budget on a 20-model config (the issue asks for under 30 s).

Measured in CPU seconds of this process: on a shared machine, wall time also counts
whatever else runs, and `check` itself is single-threaded.
"""

from __future__ import annotations

import time

from llamaswap.policytools.checker import check_config

from .helpers import config, twenty_models


def test_twenty_models_finish_within_the_default_budget() -> None:
    started = time.process_time()
    report = check_config(config(twenty_models(default_need=30)))
    cpu = time.process_time() - started
    assert cpu < 30, f"check took {cpu:.1f} CPU seconds ({report.seconds:.1f}s wall)"
    assert len(report.models) == 20
    # each misc model (30) beside both embeds (4) and all four smalls (16) is 50 > 48
    capacity = [f for f in report.findings if f.kind == "capacity"]
    assert [f.models for f in capacity] == [
        ("embed0", "embed1", f"misc{i}", "small0", "small1", "small2", "small3") for i in range(6)
    ]
    assert {rule for f in capacity for rule in f.rules} == {
        "groups.embed.exclusive: false",
        "groups.embed.persistent: true",
        "groups.embed.swap: false",
        "groups.small.exclusive: false",
        "groups.small.swap: false",
    }
    assert report.reachable_complete and report.servable == 20
