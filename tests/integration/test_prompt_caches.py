"""Prompt caches that survive a stop: saved before every stop llamaswap initiates,
restored after the next start before anything is served (against the fake upstream's
llama-server slot API; `tests/e2e/test_prompt_caches_real.py` measures the real effect)."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from llamaswap.runtime.process import ProcessActor, UpstreamSettings
from llamaswap.runtime.slots import slot_file, slot_prefix

from .helpers import fake_settings, running_actor
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


def slot_settings(tmp_path: Path, *options: str, slot_timeout: float = 30.0) -> UpstreamSettings:
    settings = fake_settings("m", "--slot-save-path", str(tmp_path), "--slots", "2", *options)
    return replace(settings, slot_dir=str(tmp_path), slot_timeout=slot_timeout)


def files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def log_lines(actor: ProcessActor) -> list[str]:
    return actor.log.lines()


async def test_slots_are_saved_before_a_stop_and_restored_before_serving(tmp_path: Path) -> None:
    settings = slot_settings(tmp_path)
    prefix = slot_prefix(settings.model, settings.cmd, settings.proxy)
    async with running_actor(settings) as (actor, log):
        await actor.ensure_ready()
        assert log.path[2:4] == [("starting", "restoring"), ("restoring", "ready")]
        assert log.events[3].reason == "no saved prompt caches to restore"
        await actor.stop()
        assert log.path[4:7] == [
            ("ready", "saving"),
            ("saving", "stopping"),
            ("stopping", "stopped"),
        ]
        assert log.events[5].reason.startswith("saved 20 cached tokens from 2 slots")
        assert files(tmp_path) == [
            slot_file(prefix, 0),
            slot_file(prefix, 1),
        ]
        await actor.ensure_ready()
        assert log.path[-2:] == [("starting", "restoring"), ("restoring", "ready")]
        assert log.events[-1].reason.startswith("restored 20 cached tokens into 2 slots")
        restored = [line for line in log_lines(actor) if "restored from" in line]
        assert restored == [
            f"slot 0 restored from {slot_file(prefix, 0)}",
            f"slot 1 restored from {slot_file(prefix, 1)}",
        ]


async def test_a_crash_saves_nothing(tmp_path: Path) -> None:
    async with running_actor(slot_settings(tmp_path)) as (actor, log):
        await actor.ensure_ready()
        pid = actor.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await log.wait_for("failed")
        assert not any(e.new == "saving" for e in log.events)
        assert files(tmp_path) == []


async def test_caches_of_another_command_are_not_restored(tmp_path: Path) -> None:
    async with running_actor(slot_settings(tmp_path)) as (actor, _):
        await actor.ensure_ready()
        await actor.stop()
    assert len(files(tmp_path)) == 2
    changed = slot_settings(tmp_path, "--respond", "another-model")
    async with running_actor(changed) as (actor, log):
        await actor.ensure_ready()
        assert log.events[3].reason == "no saved prompt caches to restore"
        assert not any("restored from" in line for line in log_lines(actor))


async def test_a_save_that_takes_too_long_is_abandoned_and_the_stop_goes_on(
    tmp_path: Path,
) -> None:
    settings = slot_settings(tmp_path, "--slot-delay", "30", slot_timeout=0.5)
    async with running_actor(settings) as (actor, log):
        await actor.ensure_ready()  # the restore finds no file: nothing to wait for
        with anyio.fail_after(10):
            await actor.stop()
        saved = [e for e in log.events if e.old == "saving"]
        assert saved[0].reason == "saving the prompt caches was abandoned after 0.5s"
        assert actor.state == "stopped"


async def test_a_swap_saves_the_evicted_model_and_restores_it_when_it_comes_back(
    tmp_path: Path,
) -> None:
    slots = ("--slot-save-path", str(tmp_path), "--slots", "1")
    yaml = config_yaml(fake_model("a", *slots), fake_model("b"))  # one at a time
    async with running_server(yaml) as server, server.client() as http:
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        for model in ("a", "b", "a"):
            url = server.url + "/v1/chat/completions"
            async with http.post(url, json={**chat, "model": model}) as response:
                assert response.status == 200
        lines = server.service.model_log("a").lines()  # type: ignore[union-attr]
    saved = [i for i, line in enumerate(lines) if "saved to" in line]
    restored = [i for i, line in enumerate(lines) if "restored from" in line]
    assert len(saved) == 1 and len(restored) == 1 and saved[0] < restored[0]
