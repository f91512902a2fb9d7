"""`llamaswap run`: start the proxy (on the built-in demo config unless --config is given)."""

from __future__ import annotations

import argparse
import os
import sys

from llamaswap.commands.config import add_source_arguments, check

DEFAULT_LISTEN = "127.0.0.1:8080"
LISTEN_VARIABLE = "LLAMASWAP_LISTEN"
EXAMPLE_CONFIG = "docs/examples/llama-server.yaml"
EXIT_BAD_CONFIG = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument(
        "--listen",
        default=None,
        help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN}, or ${LISTEN_VARIABLE})",
    )
    parser.add_argument(
        "--watch-config", action="store_true", help="reload when the config files change"
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="validate the config, print it normalised and exit (2 if invalid)",
    )
    parser.add_argument(
        "--max-body-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="largest request body accepted (default 64 MiB)",
    )
    parser.add_argument(
        "--event-loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: uvloop when installed (auto, the default; less CPU per request) "
        "or the standard library's asyncio",
    )


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {value!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def backend_options(choice: str) -> dict[str, bool]:
    """anyio's asyncio backend options for `--event-loop` (uvloop cuts ~10% CPU per request)."""
    if choice == "asyncio":
        return {"use_uvloop": False}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise ValueError("--event-loop uvloop: uvloop is not installed") from None
        return {"use_uvloop": False}
    return {"use_uvloop": True}


def run(args: argparse.Namespace) -> int:
    from llamaswap.commands.summary import summary
    from llamaswap.config.report import load_or_report
    from llamaswap.demo import demo_config
    from llamaswap.http.service import DEFAULT_MAX_BODY
    from llamaswap.server import RunOptions, run_server

    if args.validate:
        if not (args.config or args.config_dir):
            print("--validate needs --config or --config-dir", file=sys.stderr)
            return EXIT_BAD_CONFIG
        return check(args.config, args.config_dir)
    try:
        host, port = parse_listen(args.listen or os.environ.get(LISTEN_VARIABLE) or DEFAULT_LISTEN)
        loop_options = backend_options(args.event_loop)
    except ValueError as exc:
        print(f"llamaswap run: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.config or args.config_dir:
        loaded = load_or_report(args.config, args.config_dir, sys.stderr)
        if loaded is None:
            print("llamaswap: nothing was started.", file=sys.stderr)
            return EXIT_BAD_CONFIG
        config = loaded
    else:
        config = demo_config()
    options = RunOptions(
        host=host,
        port=port,
        config_path=args.config,
        config_dir=args.config_dir,
        watch=args.watch_config,
        max_body=args.max_body_size or DEFAULT_MAX_BODY,
    )

    def ready(service: object, bound_port: int) -> None:
        demo = not (args.config or args.config_dir)
        print(summary(config, host, bound_port, demo=demo, example=EXAMPLE_CONFIG), flush=True)

    import functools

    import anyio

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
        print(f"llamaswap: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
        return 1
    return 0
