"""Routing normalised into the one structure the router reads (§1.8-§1.10, our `fit`).

Legacy top-level `groups:`/`matrix:` and `routing.router` converge here. Whatever the
router, `groups` always ends with the implicit `(default)` group (swap, exclusive)
holding every model no other group claims. With `routing.router.settings`, the
section `use` does not select is still checked, but its problems are only warnings:
llama-swap ignores it, and a config that works there must load here.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Literal

from llamaswap.config.errors import PathT, Problems, format_path
from llamaswap.config.models import (
    DEFAULT_GROUP,
    GroupConfig,
    MatrixConfig,
    MatrixSet,
    ModelConfig,
    RoutingConfig,
)
from llamaswap.config.schema import RawGroup, RawMatrix, RawTop, decode, warn_unknown_keys
from llamaswap.matrix import LISTED_COMBINATIONS, compile_program, compile_sets

_VAR_KEY = re.compile(r"^[a-zA-Z0-9.-]{1,32}$")
_LEGACY_GROUPS: PathT = ("groups",)
_LEGACY_MATRIX: PathT = ("matrix",)
_SETTINGS: PathT = ("routing", "router", "settings")
_FIFO: PathT = ("routing", "scheduler", "settings", "fifo")

Router = Literal["group", "matrix", "fit"]


def build_routing(
    top: RawTop,
    models: dict[str, ModelConfig],
    known_ids: set[str],
    aliases: dict[str, str],
    capacity: dict[str, float],
    problems: Problems,
) -> RoutingConfig:
    router_raw = top.routing.router
    settings = router_raw.settings
    legacy = top.matrix is not None or bool(top.groups)
    modern = bool(router_raw.use) or settings.matrix is not None or bool(settings.groups)

    router: Router = "group"
    groups_src: dict[str, Any] = {}
    groups_path = (*_SETTINGS, "groups")
    matrix_src: dict[str, Any] | None = None
    matrix_path = (*_SETTINGS, "matrix")
    inactive: list[tuple[str, PathT, Any]] = []

    if legacy and modern:
        problems.add(
            ("routing", "router"),
            "config uses both the legacy top-level 'matrix'/'groups' keys and the new "
            "'routing.router' block; move the top-level keys into 'routing.router'",
        )
    if legacy and not modern:
        groups_src, groups_path = top.groups or {}, _LEGACY_GROUPS
        matrix_src, matrix_path = top.matrix, _LEGACY_MATRIX
        if top.matrix is not None and top.groups:
            problems.add(_LEGACY_MATRIX, "config cannot use both 'groups' and 'matrix'")
            matrix_src = None
        router = "matrix" if matrix_src is not None else "group"
    else:
        use = router_raw.use.strip()
        groups_src, matrix_src = settings.groups, settings.matrix
        if use in ("", "group", "fit"):
            router = "fit" if use == "fit" else "group"
            if matrix_src is not None:
                inactive.append(("matrix", matrix_path, matrix_src))
                matrix_src = None
        elif use == "matrix":
            router = "matrix"
            if matrix_src is None:
                problems.add(
                    ("routing", "router", "use"),
                    "routing.router.use is 'matrix' but routing.router.settings.matrix is not set",
                )
            if groups_src:
                inactive.append(("groups", groups_path, groups_src))
                groups_src = {}
        else:
            problems.add(
                ("routing", "router", "use"),
                f'unknown router "{use}" (valid: group, matrix, fit)',
            )

    ids = sorted(known_ids)
    groups = _build_groups(groups_src, groups_path, ids, aliases, problems)
    matrix = (
        _build_matrix(matrix_src, matrix_path, ids, aliases, problems)
        if matrix_src is not None
        else None
    )
    for kind, path, src in inactive:
        demoted = problems.child()
        if kind == "groups":
            _build_groups(src, path, ids, aliases, demoted)
        else:
            _build_matrix(src, path, ids, aliases, demoted)
        for problem in demoted.errors:
            note = "(section not selected by routing.router.use; ignored)"
            problems.warnings.append(replace(problem, message=f"{problem.message} {note}"))
        problems.warnings.extend(demoted.warnings)

    if router == "fit":
        if not capacity:
            problems.add(
                ("routing", "router", "use"),
                "the fit router needs top-level 'resources' (what this machine has)",
            )
        for model_id, model in models.items():
            if not model.resources:
                problems.warn(
                    ("models", model_id),
                    "declares no resources; the fit router treats it as needing nothing",
                )

    scheduler = top.routing.scheduler
    if scheduler.use.strip() not in ("", "fifo"):
        problems.add(
            ("routing", "scheduler", "use"),
            f'unknown scheduler "{scheduler.use}" (valid: fifo)',
        )
    fifo = scheduler.settings.fifo
    for key in fifo.priority:
        if key not in known_ids and key not in aliases:
            problems.add((*_FIFO, "priority", key), f'references unknown model "{key}"')
        elif key not in known_ids:
            problems.warn(
                (*_FIFO, "priority", key),
                f"'{key}' is an alias; like llama-swap, priorities are looked up by model ID, "
                f"so this entry never applies (use '{aliases[key]}')",
            )
    if fifo.max_wait_seconds <= 0:
        problems.add((*_FIFO, "maxWaitSeconds"), f"must be > 0, got {fifo.max_wait_seconds:g}")

    return RoutingConfig(
        router=router,
        groups=groups,
        matrix=matrix,
        priorities=dict(fifo.priority),
        max_wait_seconds=fifo.max_wait_seconds if fifo.max_wait_seconds > 0 else 60.0,
    )


def _not_a_model(name: str, aliases: dict[str, str]) -> str:
    if name in aliases:
        return f' ("{name}" is an alias of "{aliases[name]}"; use the model ID)'
    return ""


def _build_groups(
    src: dict[str, Any],
    base: PathT,
    ids: list[str],
    aliases: dict[str, str],
    problems: Problems,
) -> dict[str, GroupConfig]:
    groups: dict[str, GroupConfig] = {}
    owner: dict[str, str] = {}
    known = set(ids)
    for name, raw_group in src.items():
        path = (*base, name)
        if name == DEFAULT_GROUP:
            problems.add(path, f"group name '{DEFAULT_GROUP}' is reserved for ungrouped models")
            continue
        raw = decode(RawGroup, raw_group, path, problems)
        warn_unknown_keys(raw, path, problems)
        members: list[str] = []
        for index, member in enumerate(raw.members):
            where = (*path, "members", index)
            if member in members:
                problems.add(where, f"duplicate model member {member} found in group: {name}")
            elif member not in known:
                problems.add(
                    where, f'no model config for "{member}"' + _not_a_model(member, aliases)
                )
            elif member in owner:
                problems.add(
                    where,
                    f"model member {member} is used in multiple groups: {owner[member]} and {name}",
                )
            else:
                owner[member] = name
                members.append(member)
        groups[name] = GroupConfig(
            name=name,
            swap=raw.swap,
            exclusive=raw.exclusive,
            persistent=raw.persistent,
            members=members,
            yaml_path=format_path(path),
        )
    groups[DEFAULT_GROUP] = GroupConfig(
        name=DEFAULT_GROUP,
        swap=True,
        exclusive=True,
        persistent=False,
        members=[model_id for model_id in ids if model_id not in owner],
        yaml_path="",
    )
    return groups


def _build_matrix(
    src: dict[str, Any],
    base: PathT,
    ids: list[str],
    aliases: dict[str, str],
    problems: Problems,
) -> MatrixConfig:
    raw = decode(RawMatrix, src, base, problems)
    warn_unknown_keys(raw, base, problems)
    known = set(ids)
    variables: dict[str, str] = {}
    broken: set[str] = set()  # reported vars: later uses are not reported again
    for key, model in raw.vars.items():
        where = (*base, "vars", key)
        if not _VAR_KEY.match(key):
            problems.add(
                where,
                f"var key \"{key}\" must contain only alphanumeric, '-' or '.' characters "
                "and be 1-32 characters long",
            )
            broken.add(key)
        elif model not in known:
            problems.add(
                where,
                f'var key "{key}" references unknown model "{model}"'
                + _not_a_model(model, aliases),
            )
            broken.add(key)
        else:
            variables[key] = model

    def resolve(ident: str) -> str | None:
        if ident in variables:
            return variables[ident]
        if ident in known:
            return ident
        return "" if ident in broken else None

    costs: dict[str, int] = {}
    for key, cost in raw.evict_costs.items():
        where = (*base, "evict_costs", key)
        model_id = resolve(key)
        if cost <= 0:
            problems.add(
                where, f'evict_cost multiplier for "{key}" must be a positive integer, got {cost}'
            )
        elif model_id is None:
            problems.add(where, f'unknown var or model "{key}"')
        elif model_id:
            costs[model_id] = cost

    written = src.get("sets") if isinstance(src, dict) else None
    if not raw.sets and (written is None or isinstance(written, dict)):  # else: type error
        problems.add((*base, "sets"), "matrix must define at least one set")
    compiled = compile_sets(list(raw.sets.items()), resolve)
    for set_name, message in compiled.errors:
        problems.add((*base, "sets", set_name), message)
    paths = {name: format_path((*base, "sets", name)) for name in compiled.order}
    program = compile_program(compiled.order, compiled.roots, paths)
    sets = [
        MatrixSet(
            name=entry.name,
            dsl=raw.sets[entry.name],
            alternatives=program.alternatives(entry.root, LISTED_COMBINATIONS),
            combinations=program.combinations(entry.root),
            yaml_path=entry.yaml_path,
        )
        for entry in program.sets
    ]
    return MatrixConfig(
        vars=variables,
        sets=sets,
        evict_costs={model_id: costs.get(model_id, 1) for model_id in ids},
        program=program,
    )
