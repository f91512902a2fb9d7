"""The router actor over gated fake processes (llama-swap's router scenarios, §6.2).

No subprocesses and no sleeps: fake upstreams start, become healthy and stop when a
test opens their gates, and tests await router events instead of polling.
"""

from __future__ import annotations

import time

import anyio
import pytest

from llamaswap.fsm.names import ProcessState
from llamaswap.runtime.events import ProcessStateChanged, SwapStarted
from llamaswap.runtime.leases import Lease
from llamaswap.scheduling import (
    ModelNotFound,
    ModelNotLoaded,
    ModelUnloaded,
    ShuttingDown,
    SwapFailed,
    TooManyRequests,
)
from llamaswap.testing.gated import GatedLauncher

from .routers import Watch, config_of, models_yaml, running_router, until_spawned

pytestmark = pytest.mark.anyio

THREE = models_yaml("a", "b", "c")


def stopped(model: str) -> object:
    return lambda e: (
        isinstance(e, ProcessStateChanged) and e.model == model and e.new == ProcessState.STOPPED
    )


def failed(model: str) -> object:
    return lambda e: (
        isinstance(e, ProcessStateChanged) and e.model == model and e.new == ProcessState.FAILED
    )


async def test_on_demand_start_then_fast_path() -> None:
    async with running_router(THREE) as (router, launcher):
        async with router.lease("a") as lease:
            assert lease.model == "a" and lease.proxy == "http://localhost:5800"
        async with router.lease("a"):
            pass
        assert launcher.starts["a"] == 1
        assert router.model_state("a") == "ready"


async def test_unknown_model_is_not_found() -> None:
    async with running_router(THREE) as (router, launcher):
        with pytest.raises(ModelNotFound):
            async with router.lease("zzz"):
                pass
        assert not launcher.starts


async def test_default_group_swaps_one_model_at_a_time() -> None:
    async with running_router(THREE) as (router, launcher):
        await router.load("a")
        await router.load("b")
        assert launcher.stops["a"] == 1
        assert launcher.running() == {"b"}


async def test_non_swap_group_keeps_members_running() -> None:
    yaml = THREE + "\ngroups:\n  g:\n    swap: false\n    members: [a, b]\n"
    async with running_router(yaml) as (router, launcher):
        await router.load("a")
        await router.load("b")
        assert launcher.running() == {"a", "b"}


async def test_exclusive_group_stops_other_groups() -> None:
    yaml = THREE + "\ngroups:\n  g1:\n    members: [a]\n  g2:\n    members: [b]\n"
    async with running_router(yaml) as (router, launcher):
        await router.load("a")
        await router.load("b")
        assert launcher.running() == {"b"}


async def test_non_exclusive_groups_start_in_parallel() -> None:
    yaml = THREE + (
        "\ngroups:\n  g1:\n    exclusive: false\n    members: [a]\n"
        "  g2:\n    exclusive: false\n    members: [b]\n"
    )
    launcher = GatedLauncher(auto_ready=False)
    async with running_router(yaml, launcher) as (router, _):
        async with anyio.create_task_group() as tg:
            tg.start_soon(router.load, "a")
            tg.start_soon(router.load, "b")
            await until_spawned(launcher, "a")
            await until_spawned(launcher, "b")  # both started before either is healthy
            launcher.current("a").become_healthy()
            launcher.current("b").become_healthy()
        assert launcher.running() == {"a", "b"} and not launcher.stops


async def test_same_group_swap_waits_for_the_swap_and_the_request() -> None:
    launcher = GatedLauncher(auto_ready=False)
    async with running_router(THREE, launcher) as (router, _):
        release_a = anyio.Event()
        a_granted = anyio.Event()

        async def use_a() -> None:
            async with router.lease("a"):
                a_granted.set()
                await release_a.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(use_a)
            await until_spawned(launcher, "a")
            watch = Watch(router)
            tg.start_soon(router.load, "b")
            await watch.until(lambda e: getattr(e, "queued", {}).get("b"))
            launcher.current("a").become_healthy()
            await a_granted.wait()
            assert launcher.starts["b"] == 0, "a is serving: b must wait"
            release_a.set()
            await until_spawned(launcher, "b")
            assert launcher.stops["a"] == 1
            launcher.current("b").become_healthy()


async def test_persistent_group_is_not_evicted() -> None:
    yaml = THREE + (
        "\ngroups:\n  keep:\n    persistent: true\n    exclusive: false\n    members: [a]\n"
        "  g:\n    members: [b, c]\n"
    )
    async with running_router(yaml) as (router, launcher):
        await router.load("a")
        await router.load("b")
        await router.load("c")
        assert launcher.running() == {"a", "c"}


async def test_non_exclusive_member_leaves_an_exclusive_group_running() -> None:
    yaml = THREE + (
        "\ngroups:\n  big:\n    members: [a]\n  side:\n    exclusive: false\n    members: [b]\n"
    )
    async with running_router(yaml) as (router, launcher):
        await router.load("a")
        await router.load("b")
        assert launcher.running() == {"a", "b"}


MATRIX = THREE + (
    "\nrouting:\n  router:\n    use: matrix\n    settings:\n      matrix:\n"
    "        sets:\n          pair: 'a & b'\n          solo: 'c'\n"
)


async def test_matrix_coexistence_and_eviction() -> None:
    async with running_router(MATRIX) as (router, launcher):
        await router.load("a")
        await router.load("b")
        assert launcher.running() == {"a", "b"}
        await router.load("c")
        assert launcher.running() == {"c"}


async def test_matrix_incompatible_request_queues_behind_the_swap() -> None:
    launcher = GatedLauncher(auto_ready=False)
    async with running_router(MATRIX, launcher) as (router, _):
        async with anyio.create_task_group() as tg:
            tg.start_soon(router.load, "a")
            await until_spawned(launcher, "a")
            tg.start_soon(router.load, "c")
            tg.start_soon(router.load, "b")
            await until_spawned(launcher, "b")  # compatible with a: runs in parallel
            assert launcher.starts["c"] == 0
            launcher.current("a").become_healthy()
            launcher.current("b").become_healthy()
            await until_spawned(launcher, "c")
            launcher.current("c").become_healthy()
        assert launcher.running() == {"c"}


async def test_concurrency_limit_rejects_with_429() -> None:
    yaml = models_yaml("a", extra="    concurrencyLimit: 1")
    async with running_router(yaml) as (router, _), router.lease("a"):
        with pytest.raises(TooManyRequests) as rejected:
            async with router.lease("a"):
                pass
        assert rejected.value.status == 429


def waiting(model: str, count: int) -> object:
    return lambda e: getattr(e, "queued", {}).get(model, 0) == count


def total_waiting(count: int) -> object:
    return lambda e: hasattr(e, "queued") and sum(e.queued.values()) == count


async def test_a_cancelled_waiter_leaves_and_the_other_is_served() -> None:
    launcher = GatedLauncher(auto_ready=False)
    async with running_router(THREE, launcher) as (router, _):
        watch = Watch(router)
        got: list[Lease] = []
        doomed = anyio.CancelScope()

        async def wait_for_a() -> None:
            async with router.lease("a") as lease:
                got.append(lease)

        async def doomed_waiter() -> None:
            with doomed:
                await wait_for_a()

        async with anyio.create_task_group() as tg:
            tg.start_soon(doomed_waiter)
            tg.start_soon(wait_for_a)
            await watch.until(waiting("a", 2))
            doomed.cancel()
            await watch.until(waiting("a", 1))
            await until_spawned(launcher, "a")
            launcher.current("a").become_healthy()
        assert len(got) == 1
        assert launcher.starts["a"] == 1


async def test_a_client_that_leaves_the_queue_never_triggers_a_load() -> None:
    async with running_router(THREE) as (router, launcher):
        watch = Watch(router)
        async with router.lease("a"):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(router.load, "b")
                    await watch.until(lambda e: getattr(e, "queued", {}).get("b"))
                    scope.cancel()
        await watch.until(lambda e: getattr(e, "queued", None) == {} and not e.in_flight)
        assert launcher.starts["b"] == 0
        assert launcher.running() == {"a"}


async def test_a_request_during_a_stop_waits_and_restarts() -> None:
    launcher = GatedLauncher(auto_stop=False)
    async with running_router(THREE, launcher) as (router, _):
        async with anyio.create_task_group() as tg:
            await router.load("a")
            tg.start_soon(router.unload, ["a"])
            first = launcher.current("a")
            await first.stop_requested.wait()
            watch = Watch(router)
            tg.start_soon(router.load, "a")
            await watch.until(lambda e: isinstance(e, SwapStarted) and e.target == "a")
            assert launcher.starts["a"] == 1, "no start before the stop has finished"
            first.allow_stop()
            await until_spawned(launcher, "a", 2)
        assert launcher.running() == {"a"}


async def test_unload_uses_each_models_unload_timeout() -> None:
    yaml = (
        "groups:\n  g:\n    swap: false\n    members: [a, b]\n"
        + models_yaml("a", extra="    unloadTimeout: 45")
        + "\n  b:\n    cmd: fake --port ${PORT}\n"
    )
    async with running_router(yaml) as (router, launcher):
        await router.load("a")
        await router.load("b")
        await router.unload(["a"])
        assert launcher.current("a").grace == 45
        assert launcher.running() == {"b"}
        await router.unload()
        assert launcher.current("b").grace == 10
        assert launcher.running() == set()


async def test_unload_stops_in_parallel_and_returns_after_the_stops() -> None:
    yaml = THREE + "\ngroups:\n  g:\n    swap: false\n    members: [a, b, c]\n"
    launcher = GatedLauncher(auto_stop=False)
    async with running_router(yaml, launcher) as (router, _):
        for model in "abc":
            await router.load(model)
        done = anyio.Event()

        async def unload_all() -> None:
            await router.unload()
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(unload_all)
            for model in "abc":
                await launcher.current(model).stop_requested.wait()
            assert not done.is_set()
            for model in "abc":
                launcher.current(model).allow_stop()
        assert done.is_set() and launcher.running() == set()


async def test_unload_fails_the_waiters_of_that_model() -> None:
    launcher = GatedLauncher(auto_ready=False)
    async with running_router(THREE, launcher) as (router, _):
        async with anyio.create_task_group() as tg:

            async def wait_for_a() -> None:
                with pytest.raises(ModelUnloaded):
                    await router.load("a")

            tg.start_soon(wait_for_a)
            await until_spawned(launcher, "a")
            await router.unload(["a"])
        assert launcher.running() == set()


async def test_a_failed_start_reaches_every_waiter() -> None:
    launcher = GatedLauncher()
    launcher.fail_spawn.add("a")
    async with running_router(THREE, launcher) as (router, _):
        with pytest.raises(SwapFailed, match="failed to start command 'fake"):
            await router.load("a")


async def test_a_crash_revokes_leases_in_flight() -> None:
    async with running_router(THREE) as (router, launcher):
        watch = Watch(router)
        async with router.lease("a") as lease:
            launcher.current("a").exit(1)
            crash = await watch.until(failed("a"))
            assert lease.revoked == crash.reason
            assert lease.revoked.startswith("upstream exited unexpectedly with code 1")
            assert lease.scope.cancel_called
        assert router.model_fault("a") == crash.reason
        await router.load("a")
        assert launcher.starts["a"] == 2


async def test_shutdown_stops_everything_and_refuses_later_requests() -> None:
    yaml = THREE + "\ngroups:\n  g:\n    swap: false\n    members: [a, b]\n"
    async with running_router(yaml) as (router, launcher):
        await router.load("a")
        await router.load("b")
        await router.shutdown(1)
        assert launcher.stops == {"a": 1, "b": 1}
        assert router.state == "shutdown"
        with pytest.raises(ShuttingDown):
            await router.load("a")
        await router.shutdown(1)  # idempotent


async def test_ttl_unloads_after_the_last_request_not_during_it() -> None:
    yaml = models_yaml("a", extra="    ttl: 1")
    async with running_router(yaml) as (router, launcher):
        watch = Watch(router)
        async with router.lease("a"):
            await anyio.sleep(1.5)  # a request that outlives the ttl is not cut
        assert launcher.stops["a"] == 0
        event = await watch.until(stopped("a"), limit=5)
        assert event.old == "stopping"
        assert launcher.stops["a"] == 1


async def test_each_request_restarts_the_ttl_clock() -> None:
    yaml = models_yaml("a", extra="    ttl: 1")
    async with running_router(yaml) as (router, launcher):
        await router.load("a")
        loaded = time.monotonic()
        await anyio.sleep(0.6)
        async with router.lease("a"):
            pass
        used = time.monotonic()
        watch = Watch(router)
        await watch.until(stopped("a"), limit=5)
        assert time.monotonic() - used >= 0.95  # from the last request, not from the load
        assert time.monotonic() - loaded >= 1.5
        assert launcher.stops["a"] == 1


async def test_a_lease_that_may_not_load_is_decided_by_the_router_at_once() -> None:
    async with running_router(THREE) as (router, launcher):
        with pytest.raises(ModelNotLoaded):
            async with router.lease("a", may_load=False):
                pass
        assert launcher.starts["a"] == 0
        await router.load("a")
        async with router.lease("a", may_load=False) as lease:
            assert lease.model == "a"
        await router.load("b")  # evicts a
        with pytest.raises(ModelNotLoaded):
            async with router.lease("a", may_load=False):
                pass
        assert launcher.starts["a"] == 1


async def test_reload_restarts_changed_models_and_keeps_the_rest() -> None:
    yaml = THREE + "\ngroups:\n  g:\n    swap: false\n    members: [a, b, c]\n"
    async with running_router(yaml) as (router, launcher):
        await router.load("a")
        await router.load("b")
        changed = yaml.replace("fake --model b", "fake --model b --new-flag").replace(
            "  c:\n    cmd: fake --model c --port ${PORT}\n", ""
        )
        changed = changed.replace("members: [a, b, c]", "members: [a, b]")
        await router.reload(config_of(changed))
        assert router.state == "accepting"
        assert launcher.starts["a"] == 1 and launcher.stops["a"] == 0
        assert launcher.stops["b"] == 1
        assert "c" not in router.processes
        await router.load("b")
        assert launcher.starts["b"] == 2
        with pytest.raises(ModelNotFound):
            await router.load("c")


async def test_a_request_waiting_for_a_changed_model_is_served_by_its_new_process() -> None:
    launcher = GatedLauncher(auto_ready=False)
    async with running_router(THREE, launcher) as (router, _):
        served: list[str] = []

        async def use_b() -> None:
            async with router.lease("b") as lease:
                served.append(lease.model)

        async with anyio.create_task_group() as tg:
            tg.start_soon(use_b)
            await until_spawned(launcher, "b")  # b is starting; the request waits for it
            changed = THREE.replace("fake --model b", "fake --model b --new-flag")
            await router.reload(config_of(changed))
            await until_spawned(launcher, "b", count=2)
            launcher.current("b").become_healthy()
        assert served == ["b"]
        assert launcher.stops["b"] == 1


async def test_a_request_waiting_for_a_removed_model_fails() -> None:
    launcher = GatedLauncher(auto_ready=False)
    async with running_router(THREE, launcher) as (router, _):
        errors: list[Exception] = []

        async def use_c() -> None:
            try:
                async with router.lease("c"):
                    pass
            except ModelUnloaded as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(use_c)
            await until_spawned(launcher, "c")
            await router.reload(config_of(models_yaml("a", "b")))
        assert len(errors) == 1
        assert launcher.starts["c"] == 1


async def test_preload_starts_models_without_a_request() -> None:
    yaml = THREE + "\nhooks:\n  on_startup:\n    preload: [b]\n"
    launcher = GatedLauncher()
    async with running_router(yaml, launcher) as (router, _):
        await until_spawned(launcher, "b")
        watch = Watch(router)
        if router.model_state("b") != "ready":
            await watch.until(lambda e: isinstance(e, ProcessStateChanged) and e.new == "ready")
        assert launcher.running() == {"b"}


async def test_collation_serves_a_a_b_b_c_c_with_three_starts() -> None:
    launcher = GatedLauncher(auto_ready=False)
    order: list[str] = []
    async with running_router(THREE, launcher) as (router, _):
        watch = Watch(router)

        async def use(model: str) -> None:
            async with router.lease(model):
                order.append(model)

        async with anyio.create_task_group() as tg:
            for count, model in enumerate("abcabc", start=1):
                tg.start_soon(use, model)
                await watch.until(total_waiting(count))
            for model in "abc":
                await until_spawned(launcher, model)
                launcher.current(model).become_healthy()
    assert order == ["a", "a", "b", "b", "c", "c"]
    assert dict(launcher.starts) == {"a": 1, "b": 1, "c": 1}
    assert [e.target for e in watch.events if isinstance(e, SwapStarted)] == ["a", "b", "c"]
