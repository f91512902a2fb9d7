"""`llamaswap run`, and `llamaswap` with llama-swap's own flags: start the proxy.

Both take the same options, each flag in llama-swap's spelling (`-config`) and the GNU
one (`--config`), so a systemd unit or `docker run` line written for llama-swap works
unchanged. The config is `-config`/`-config-dir`, else `./config.yaml` when it exists,
else the built-in demo. Nothing heavy is imported until `run()`: `llamaswap --version`
parses its arguments through `add_arguments`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .parsing import VersionAction, add_source_arguments, spellings

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_TLS_LISTEN = "127.0.0.1:8443"  # llama-swap moves to 8443 with TLS too
LISTEN_VARIABLE = "LLAMASWAP_LISTEN"
DEFAULT_CONFIG = "config.yaml"
EXAMPLE_CONFIG = "docs/examples/llama-server.yaml"
EXIT_BAD_CONFIG = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(*spellings("version"), action=VersionAction, help="print the version")
    add_source_arguments(parser)
    parser.add_argument(
        *spellings("listen"),
        metavar="ADDR",
        help=f"HOST:PORT, or :PORT for every interface (default {DEFAULT_LISTEN}, "
        f"{DEFAULT_TLS_LISTEN} with TLS, or ${LISTEN_VARIABLE})",
    )
    parser.add_argument(
        *spellings("watch-config"),
        action="store_true",
        help="reload when the config files change",
    )
    parser.add_argument(*spellings("tls-cert-file"), metavar="FILE", help="serve HTTPS: PEM cert")
    parser.add_argument(*spellings("tls-key-file"), metavar="FILE", help="... and its PEM key")
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


def default_config(args: argparse.Namespace) -> None:
    """No -config nor -config-dir: take ./config.yaml when there is one, and say so first."""
    if args.config or args.config_dir or not Path(DEFAULT_CONFIG).is_file():
        return
    args.config = DEFAULT_CONFIG
    print(
        f"llamaswap: using {Path(DEFAULT_CONFIG).resolve()} "
        "(no -config given; found in the current directory)",
        file=sys.stderr,
        flush=True,
    )


def describe_source(args: argparse.Namespace) -> str | None:
    """What the summary says is running; None for the built-in demo."""
    parts = [p for p in (args.config, args.config_dir and f"{args.config_dir}/") if p]
    return " + ".join(parts) or None


def run(args: argparse.Namespace) -> int:
    from .listen import parse_listen
    from .tls import TLSProblem, server_context

    default_config(args)
    if args.validate:
        from .config import check

        if not (args.config or args.config_dir):
            print("--validate needs -config or -config-dir", file=sys.stderr)
            return EXIT_BAD_CONFIG
        return check(args.config, args.config_dir)
    try:
        ssl_context = server_context(args.tls_cert_file, args.tls_key_file)
        fallback = DEFAULT_TLS_LISTEN if ssl_context else DEFAULT_LISTEN
        listen = parse_listen(args.listen or os.environ.get(LISTEN_VARIABLE) or fallback)
        loop_options = backend_options(args.event_loop)
    except (ValueError, TLSProblem) as exc:
        print(f"llamaswap: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    from .serving import serve_until_stopped

    return serve_until_stopped(args, listen, ssl_context, loop_options)
