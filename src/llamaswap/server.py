"""Run llamaswap: the router, the HTTP server, signals, config reloads, a clean shutdown.

SIGINT/SIGTERM stop accepting work, fail waiters, stop every upstream and exit.
SIGHUP (and `--watch-config`) load the config again: a valid one is applied through
the router (changed models restart, the rest keep running); an invalid one is logged
and the running config stays.
"""

from __future__ import annotations

import functools
import logging
import resource
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from llamaswap import logsetup
from llamaswap.config import Config, ConfigError, reload_config, watch_config
from llamaswap.http.app import build_app, serve
from llamaswap.http.service import DEFAULT_MAX_BODY, Service
from llamaswap.runtime.events import EventBus
from llamaswap.runtime.logs import LogRing
from llamaswap.runtime.router import ReloadInProgress, RouterActor

log = logging.getLogger("llamaswap.server")

SHUTDOWN_BUDGET_SECONDS = 30.0
# open files beside client connections: upstream connections (the pool holds up to 256),
# upstream pipes, logs, the listening socket
FD_RESERVE = 512


@dataclass
class RunOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    config_path: str | None = None
    config_dir: str | None = None
    watch: bool = False
    max_body: int = DEFAULT_MAX_BODY
    ssl_context: ssl.SSLContext | None = None  # HTTPS (-tls-cert-file/-tls-key-file)


def make_service(config: Config, max_body: int = DEFAULT_MAX_BODY) -> Service:
    bus = EventBus()
    combined_log = LogRing("combined")  # both, interleaved as written: what /logs shows
    proxy_log = LogRing("proxy", parents=(combined_log,))
    upstream_log = LogRing("upstream", parents=(combined_log,))
    router = RouterActor(config, bus=bus, upstream_log=upstream_log)
    return Service(config, router, bus, proxy_log, upstream_log, combined_log, max_body=max_body)


def ensure_descriptors(max_connections: int) -> None:
    """Make room for `max_connections` client sockets plus our own files: past the
    open-file limit, accept() fails and upstream connections fail with it, long before
    the cap would refuse anyone. Raises the soft limit as far as the hard one allows
    (Go programs such as llama-swap raise it to the hard limit at start)."""
    if max_connections <= 0:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("could not raise the open-file limit: %s", exc)
    if soft < wanted:
        log.warning(
            "maxConnections is %d but the open-file limit is %d (about %d needed): "
            "lower maxConnections or raise the limit (ulimit -n)",
            max_connections,
            soft,
            wanted,
        )


async def apply_config(service: Service, config: Config) -> None:
    """Switch a running server to `config` (already validated)."""
    await service.router.reload(config)
    service.config = config
    service.active_profile = None
    logsetup.configure(config, service.proxy_log)
    ensure_descriptors(config.max_connections)
    for warning in config.warnings:
        log.warning("config: %s", warning)
    log.info("config reloaded")


async def reload_from_sources(service: Service, options: RunOptions) -> None:
    loaded = await anyio.to_thread.run_sync(reload_config, options.config_path, options.config_dir)
    await _apply_or_report(service, loaded)


async def _apply_or_report(service: Service, loaded: Config | ConfigError) -> None:
    if isinstance(loaded, ConfigError):
        log.warning("config reload refused; keeping the running config:\n%s", loaded)
        return
    try:
        await apply_config(service, loaded)
    except ReloadInProgress:
        log.warning("config reload skipped: another reload is being applied")


async def run_server(
    config: Config,
    options: RunOptions,
    *,
    ready: Callable[[Service, int], None] | None = None,
    service: Service | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or until cancelled); upstreams are stopped on the way out."""
    service = service or make_service(config, options.max_body)
    logsetup.configure(config, service.proxy_log)
    ensure_descriptors(config.max_connections)
    for warning in config.warnings:
        log.warning("config: %s", warning)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(service.router.run)
        try:
            port = await tg.start(
                functools.partial(serve, ssl_context=options.ssl_context),
                build_app(service),
                options.host,
                options.port,
            )
            if ready is not None:
                ready(service, port)
            tg.start_soon(_handle_signals, service, options, stop)
            if logsetup.echoes_upstream(config):
                tg.start_soon(_echo_upstream, service)
            if options.watch and (options.config_path or options.config_dir):
                tg.start_soon(_watch, service, options)
            await stop.wait()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_BUDGET_SECONDS):
                log.info("shutting down: stopping every upstream")
                await service.router.shutdown()
            tg.cancel_scope.cancel()


async def _handle_signals(service: Service, options: RunOptions, stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                if options.config_path or options.config_dir:
                    log.info("SIGHUP: reloading config")
                    await reload_from_sources(service, options)
                else:
                    log.info("SIGHUP ignored: running the built-in demo config")
            else:
                stop.set()
                return


async def _watch(service: Service, options: RunOptions) -> None:
    async for loaded in watch_config(options.config_path, options.config_dir):
        log.info("config files changed: reloading")
        await _apply_or_report(service, loaded)


async def _echo_upstream(service: Service) -> None:
    with service.upstream_log.follow(buffer=4096) as lines:
        async for line in lines:
            print(f"[{line.source}] {line.text}", flush=True)
