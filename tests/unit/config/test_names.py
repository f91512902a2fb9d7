"""§1.10 profiles and selectors, §1.11 peers, and the preload hook."""

from __future__ import annotations

import textwrap

import pytest

from llamaswap.config import ProfileConfig, Timeouts
from tests.unit.config.helpers import assert_problem, load

BASE = """
models:
  a: {cmd: srv, proxy: "http://h:1", aliases: [alias-a]}
  b: {cmd: srv, proxy: "http://h:2"}
  c: {cmd: srv, proxy: "http://h:3"}
peers:
  remote:
    proxy: http://10.0.0.2:8080
    models: [llama, shared, org/deep]
  cloud:
    proxy: https://api.example.com/v1
    apiKey: sk-x
    models: [shared, gpt]
"""


def with_base(text: str) -> str:
    return BASE + textwrap.dedent(text)


# ---- peers --------------------------------------------------------------------------


def test_peers() -> None:
    config = load(BASE)
    remote = config.peers["remote"]
    assert remote.proxy == "http://10.0.0.2:8080"
    assert remote.models == ["llama", "shared", "org/deep"]
    assert remote.fqns() == ["remote/llama", "remote/shared", "remote/org/deep"]
    assert remote.timeouts == Timeouts(response_header=60)  # peers wait 60 s for headers
    assert config.peers["cloud"].api_key == "sk-x"
    assert config.peer_model("remote/org/deep") == ("remote", "org/deep")
    assert config.peer_model("llama") == ("remote", "llama")  # bare name, one peer
    assert config.peer_model("shared") is None  # bare name, two peers: ambiguous
    assert config.peer_model("cloud/shared") == ("cloud", "shared")


def test_peer_filters_and_timeouts() -> None:
    peer = load(
        """
        peers:
          p:
            proxy: http://h:1
            models: [m]
            filters:
              stripParams: "top_k, model"
              setParams: {provider: {zdr: true}, model: x}
            timeouts: {responseHeader: 0, connect: 5}
        """
    ).peers["p"]
    assert peer.filters.strip_params == ["top_k"]
    assert peer.filters.set_params == {"provider": {"zdr": True}}
    assert peer.timeouts == Timeouts(connect=5, response_header=0)


@pytest.mark.parametrize(
    ("peers", "path", "fragment"),
    [
        ("p: {models: [m]}", "peers.p.proxy", "proxy is required"),
        ("p: {proxy: 'not a url', models: [m]}", "peers.p.proxy", "invalid peer proxy URL"),
        ("p: {proxy: 'http://h:1'}", "peers.p.models", "peer models can not be empty"),
        ("p: {proxy: 'http://h:1', models: []}", "peers.p.models", "peer models can not be empty"),
        ("p: {proxy: 'http://h:1', models: ['']}", "peers.p.models[0]", "cannot be empty"),
        (
            "p: {proxy: 'http://h:1', models: [m], timeouts: {connect: -1}}",
            "peers.p.timeouts.connect",
            "must be >= 0",
        ),
        (
            "a: {proxy: 'http://h:1', models: [b/c]}\n  a/b: {proxy: 'http://h:2', models: [c]}",
            "peers.a/b.models[0]",
            'peer model name "a/b/c" is ambiguous',
        ),
    ],
)
def test_peer_errors(peers: str, path: str, fragment: str) -> None:
    assert_problem(f"peers:\n  {peers}\n", path, fragment)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ('  remote/llama: {cmd: srv, proxy: "http://h:9"}', 'model ID "remote/llama" conflicts'),
        (
            '  x: {cmd: srv, proxy: "http://h:9", aliases: [remote/llama]}',
            'alias "remote/llama" conflicts',
        ),
    ],
)
def test_peer_names_are_reserved_against_models(extra: str, fragment: str) -> None:
    text = BASE.replace("models:\n  a:", "models:\n" + extra + "\n  a:", 1)
    assert_problem(text, "peers.remote.models[0]", fragment)


def test_peer_names_are_reserved_against_selectors_and_pins() -> None:
    assert_problem(
        with_base("selectors:\n  remote/llama: {strategy: pin, targets: [a]}\n"),
        "selectors.remote/llama",
        'name conflicts with peer model "remote/llama"',
    )
    assert_problem(
        with_base("profiles:\n  p: {pins: {remote/llama: a}}\n"),
        "peers.remote.models[0]",
        'profile p pin "remote/llama" conflicts with fully qualified peer model name',
    )


# ---- profiles -------------------------------------------------------------------------


def test_profiles() -> None:
    config = load(
        with_base(
            """
            selectors:
              coder: {strategy: warm, targets: [a, b]}
            profiles:
              coding:
                description: for coding
                pins:
                  llm-code: alias-a
                  llm-plan: remote/llama
                  llm-any: coder
                  llm-bare: gpt
                  image-gen: ~
                  b: ""
            """
        )
    )
    assert config.profiles == {
        "coding": ProfileConfig(
            name="coding",
            description="for coding",
            pins={
                "llm-code": "alias-a",
                "llm-plan": "remote/llama",
                "llm-any": "coder",
                "llm-bare": "gpt",
                "image-gen": "",
                "b": "",
            },
        )
    }


@pytest.mark.parametrize(
    ("profiles", "path", "fragment"),
    [
        ("p: [a, b]", "profiles.p", "legacy list syntax"),
        ("p: {description: x}", "profiles.p.pins", "pins must contain at least one entry"),
        ("p: {pins: {}}", "profiles.p.pins", "pins must contain at least one entry"),
        ("p: {pins: {x: nope}}", "profiles.p.pins.x", 'references unknown model "nope"'),
        ("p: {pins: {x: shared}}", "profiles.p.pins.x", 'references unknown model "shared"'),
        (
            "p: {pins: {x: a, y: x}}",
            "profiles.p.pins.y",
            'references unknown model "x"',
        ),  # no chains
        ("'': {pins: {x: a}}", "profiles.", "profile names cannot be empty"),
        ("p: {pins: {' ': a}}", "profiles.p.pins. ", "pin names cannot be empty"),
    ],
)
def test_profile_errors(profiles: str, path: str, fragment: str) -> None:
    assert_problem(with_base(f"profiles:\n  {profiles}\n"), path, fragment)


# ---- selectors ------------------------------------------------------------------------


def test_selectors() -> None:
    config = load(
        with_base(
            """
            groups:
              together: {swap: false, members: [b, c]}
            selectors:
              warm-one:
                strategy: warm
                targets: [alias-a, b]
                name: " Warm "
                description: best loaded
                unlisted: true
                metadata: {purpose: coding}
              pinned: {strategy: pin, targets: [remote/llama, a]}
              spill:
                strategy: spillover
                targets: [b, c, gpt]
                settings: {spillover: 4}
            """
        )
    )
    warm = config.selectors["warm-one"]
    assert warm.strategy == "warm"
    assert warm.targets == ["alias-a", "b"]
    assert warm.resolved_targets == ["a", "b"]
    assert (warm.name, warm.description, warm.unlisted) == ("Warm", "best loaded", True)
    assert warm.metadata == {"purpose": "coding"}
    assert warm.spillover == 1
    assert config.selectors["pinned"].resolved_targets == ["remote/llama", "a"]
    spill = config.selectors["spill"]
    assert spill.spillover == 4
    assert spill.resolved_targets == ["b", "c", "cloud/gpt"]


@pytest.mark.parametrize(
    ("selectors", "extra", "path", "fragment"),
    [
        ("s: {targets: [a]}", "", "selectors.s.strategy", "strategy is required"),
        (
            "s: {strategy: random, targets: [a]}",
            "",
            "selectors.s.strategy",
            'unknown strategy "random"',
        ),
        (
            "s: {strategy: pin}",
            "",
            "selectors.s.targets",
            "targets must contain at least one entry",
        ),
        (
            "s: {strategy: pin, targets: [nope]}",
            "",
            "selectors.s.targets[0]",
            'references unknown model "nope"',
        ),
        (
            "s: {strategy: pin, targets: [t]}\n  t: {strategy: pin, targets: [a]}",
            "",
            "selectors.s.targets[0]",
            "selector chaining is not supported",
        ),
        (
            "s: {strategy: warm, targets: [a, gpt]}",
            "",
            "selectors.s.targets[1]",
            'must resolve to a local model for strategy "warm"',
        ),
        ("a: {strategy: pin, targets: [b]}", "", "selectors.a", 'name conflicts with model ID "a"'),
        (
            "alias-a: {strategy: pin, targets: [b]}",
            "",
            "selectors.alias-a",
            'name conflicts with model alias "alias-a"',
        ),
        (
            "s: {strategy: spillover, targets: [a], settings: {spillover: 0}}",
            "",
            "selectors.s.settings.spillover",
            "must be >= 1",
        ),
        (
            "s: {strategy: spillover, targets: [a, alias-a]}",
            "",
            "selectors.s.targets",
            'duplicate resolved model "a"',
        ),
        (
            "s: {strategy: spillover, targets: [a, b]}",
            "",
            "selectors.s.targets",
            "must share one routing group with swap: false",
        ),
        (
            "s: {strategy: spillover, targets: [a, b]}",
            "groups: {g1: {swap: false, members: [a]}, g2: {swap: false, members: [b]}}",
            "selectors.s.targets",
            "must share one routing group with swap: false",
        ),
        (
            "s: {strategy: spillover, targets: [a, b]}",
            "groups: {g: {swap: true, members: [a, b]}}",
            "selectors.s.targets",
            "must share one routing group with swap: false",
        ),
        (
            "s: {strategy: spillover, targets: [a, c]}",
            "matrix: {sets: {x: 'a & b', y: 'c'}}",
            "selectors.s.targets",
            "must all appear together in one expanded matrix set",
        ),
    ],
)
def test_selector_errors(selectors: str, extra: str, path: str, fragment: str) -> None:
    assert_problem(with_base(f"{extra}\nselectors:\n  {selectors}\n"), path, fragment)


def test_spillover_peer_targets_need_no_coexistence() -> None:
    config = load(with_base("selectors:\n  s: {strategy: spillover, targets: [a, gpt, llama]}\n"))
    assert config.selectors["s"].resolved_targets == ["a", "cloud/gpt", "remote/llama"]


def test_spillover_coexistence_in_a_matrix() -> None:
    config = load(
        with_base(
            "matrix: {sets: {x: '(a | c) & b'}}\n"
            "selectors:\n  s: {strategy: spillover, targets: [b, c]}\n"
        )
    )
    assert config.selectors["s"].resolved_targets == ["b", "c"]


@pytest.mark.parametrize(
    ("needs", "ok"),
    [("{vram: 20}", True), ("{vram: 30}", False)],
)
def test_spillover_coexistence_with_fit(needs: str, ok: bool) -> None:
    text = f"""
        resources: {{vram: 48}}
        routing: {{router: {{use: fit}}}}
        models:
          a: {{cmd: srv, proxy: "http://h:1", resources: {needs}}}
          b: {{cmd: srv, proxy: "http://h:2", resources: {needs}}}
        selectors:
          s: {{strategy: spillover, targets: [a, b]}}
        """
    if ok:
        assert load(text).selectors["s"].resolved_targets == ["a", "b"]
    else:
        assert_problem(text, "selectors.s.targets", "do not fit together")


# ---- preload -----------------------------------------------------------------------------


def test_preload_resolves_aliases_and_drops_unknown_names_with_a_warning() -> None:
    config = load(
        with_base("hooks:\n  on_startup:\n    preload: [' alias-a ', '', b, nope, remote/llama]\n")
    )
    assert config.preload == ["a", "b"]
    assert sum("preload" in w and "dropped" in w for w in config.warnings) == 2
