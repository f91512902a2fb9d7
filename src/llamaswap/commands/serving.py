"""The heavy half of `llamaswap run`: load the config, serve, report a port that is taken.

Kept apart from `run` so that parsing the command line imports no server code.
"""

from __future__ import annotations

import argparse
import functools
import ssl
import sys

import anyio

from llamaswap.config import Config
from llamaswap.config.report import load_or_report
from llamaswap.demo import demo_config
from llamaswap.http.service import DEFAULT_MAX_BODY
from llamaswap.server import RunOptions, run_server

from .listen import Listen, is_loopback
from .run import EXAMPLE_CONFIG, EXIT_BAD_CONFIG, describe_source
from .summary import summary

EXIT_CANNOT_LISTEN = 1


def _config(args: argparse.Namespace) -> Config | None:
    if not (args.config or args.config_dir):
        return demo_config()
    loaded = load_or_report(args.config, args.config_dir, sys.stderr)
    if loaded is None:
        print("llamaswap: nothing was started.", file=sys.stderr)
    return loaded


def serve_until_stopped(
    args: argparse.Namespace,
    listen: Listen,
    ssl_context: ssl.SSLContext | None,
    loop_options: dict[str, bool],
) -> int:
    """Serve until SIGINT/SIGTERM; the exit status."""
    config = _config(args)
    if config is None:
        return EXIT_BAD_CONFIG
    options = RunOptions(
        host=listen.host,
        port=listen.port,
        config_path=args.config,
        config_dir=args.config_dir,
        watch=args.watch_config,
        max_body=args.max_body_size or DEFAULT_MAX_BODY,
        ssl_context=ssl_context,
    )
    source = describe_source(args)
    local_only = is_loopback(listen)  # before the event loop: a host name needs DNS

    def ready(service: object, bound_port: int) -> None:
        bound = Listen(listen.host, bound_port)
        tls = ssl_context is not None
        text = summary(
            config, bound, tls=tls, source=source, example=EXAMPLE_CONFIG, local_only=local_only
        )
        print(text, flush=True)

    try:
        anyio.run(
            functools.partial(run_server, config, options, ready=ready),
            backend_options=loop_options,
        )
    except (OSError, BaseExceptionGroup) as raised:
        errors = raised.subgroup(OSError) if isinstance(raised, BaseExceptionGroup) else raised
        if errors is None:
            raise
        error = errors.exceptions[0] if isinstance(errors, BaseExceptionGroup) else errors
        reason = getattr(error, "strerror", None) or error
        print(f"llamaswap: cannot listen on {listen}: {reason}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    return 0
