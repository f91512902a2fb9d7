"""`llamaswap simulate`: replay a request trace against routing policies, on a virtual clock.

The real scheduler and policy, no processes and no sleeps (see
`llamaswap.policytools.simulation`). Several `--policy` values are compared side by
side. Exit 0, or 2 when the config, the trace or an option is invalid, or when the
config cannot run one of the policies asked for (the others are still reported).
"""

from __future__ import annotations

import argparse
import json
import sys

from llamaswap.commands.check import note_declared_figures
from llamaswap.config import Config
from llamaswap.config.report import load_from_args
from llamaswap.policytools.plot import plot_timeline
from llamaswap.policytools.simreport import Comparison, render_table, to_csv, to_json
from llamaswap.policytools.simulation import (
    DEFAULT_LOAD_SECONDS,
    DEFAULT_STOP_SECONDS,
    POLICIES,
    PolicyUnavailable,
    Seconds,
    simulate,
)
from llamaswap.policytools.trace import (
    DEFAULT_DURATION,
    DEFAULT_RATE,
    DEFAULT_ZIPF,
    TraceError,
    TraceRequest,
    format_trace,
    read_trace,
    synthetic_trace,
)

from .config import add_source_arguments

EXIT_OK, EXIT_INVALID = 0, 2


class UsageProblem(Exception):
    """An option the config or the trace contradicts (exit 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", metavar="FILE", help='JSON lines: {"t", "model", "duration"}')
    source.add_argument(
        "--synthetic", type=int, metavar="N", help="generate a trace of N requests instead"
    )
    synthetic = parser.add_argument_group("synthetic traces")
    synthetic.add_argument(
        "--models", type=int, metavar="K", help="use the first K model IDs (default: all)"
    )
    synthetic.add_argument(
        "--zipf",
        type=float,
        default=DEFAULT_ZIPF,
        metavar="A",
        help=f"popularity exponent, rank 1 = first model ID (default {DEFAULT_ZIPF})",
    )
    synthetic.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the generated trace (default 0)"
    )
    synthetic.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        metavar="R",
        help=f"mean arrivals per second (default {DEFAULT_RATE:g})",
    )
    synthetic.add_argument(
        "--mean-duration",
        type=float,
        default=DEFAULT_DURATION,
        metavar="S",
        help=f"mean seconds a request holds its model (default {DEFAULT_DURATION:g})",
    )
    synthetic.add_argument(
        "--save-trace", metavar="FILE", help="also write the generated trace to FILE"
    )
    parser.add_argument(
        "--policy",
        action="append",
        choices=POLICIES,
        help="policy to simulate (repeatable, compared side by side; default: the config's)",
    )
    parser.add_argument(
        "--load-seconds",
        action="append",
        default=[],
        metavar="[MODEL=]S",
        help=f"seconds to load MODEL, or every model (default {DEFAULT_LOAD_SECONDS:g})",
    )
    parser.add_argument(
        "--stop-seconds",
        action="append",
        default=[],
        metavar="[MODEL=]S",
        help=f"seconds to stop MODEL, or every model (default {DEFAULT_STOP_SECONDS:g})",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the results as JSON")
    output.add_argument("--csv", action="store_true", help="print one CSV row per policy and model")
    parser.add_argument("--plot", metavar="FILE", help="write a timeline plot (.png or .svg)")


def parse_seconds(values: list[str], default: float, config: Config, option: str) -> Seconds:
    """`["8", "big=30"]` -> 8 s for every model, 30 s for big."""
    per_model: dict[str, float] = {}
    for value in values:
        name, _, amount = value.rpartition("=")
        try:
            seconds = float(amount)
        except ValueError:
            raise UsageProblem(f"{option} {value}: {amount!r} is not a number") from None
        if seconds < 0:
            raise UsageProblem(f"{option} {value}: seconds must be >= 0")
        if not name:
            default = seconds
            continue
        model = config.resolve(name)
        if model is None:
            raise UsageProblem(f"{option} {value}: no model {name!r} in the config")
        per_model[model] = seconds
    return Seconds(default, per_model)


def build_trace(args: argparse.Namespace, config: Config) -> tuple[list[TraceRequest], str]:
    if args.trace is not None:
        return read_trace(args.trace), args.trace
    models = sorted(config.models)
    count = len(models) if args.models is None else args.models
    if not 1 <= count <= len(models):
        raise UsageProblem(f"--models {count}: the config has {len(models)} models")
    if args.synthetic < 0:
        raise UsageProblem(f"--synthetic {args.synthetic}: must be >= 0")
    try:
        requests = synthetic_trace(
            args.synthetic,
            models[:count],
            zipf=args.zipf,
            seed=args.seed,
            rate=args.rate,
            mean_duration=args.mean_duration,
        )
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    if args.save_trace:
        with open(args.save_trace, "w", encoding="utf-8") as out:
            out.write(format_trace(requests))
    described = f"synthetic over {count} models, zipf {args.zipf:g}, seed {args.seed}"
    return requests, described


def run(args: argparse.Namespace) -> int:
    config = load_from_args(args, "simulate", sys.stderr)
    if config is None:
        return EXIT_INVALID
    try:
        load = parse_seconds(args.load_seconds, DEFAULT_LOAD_SECONDS, config, "--load-seconds")
        stop = parse_seconds(args.stop_seconds, DEFAULT_STOP_SECONDS, config, "--stop-seconds")
        requests, described = build_trace(args, config)
    except (UsageProblem, TraceError, OSError) as exc:
        print(f"llamaswap simulate: {exc}", file=sys.stderr)
        return EXIT_INVALID
    unknown = sorted({r.model for r in requests if config.resolve(r.model) is None})
    if unknown:
        print(f"warning: the trace names unknown models: {', '.join(unknown)}", file=sys.stderr)
    note_declared_figures(config, "simulate")
    policies = list(dict.fromkeys(args.policy or [config.routing.router]))
    source = args.config or args.config_dir
    comparison = Comparison(source, described, len(requests), load, stop, order=policies)
    for name in policies:
        try:
            comparison.results[name] = simulate(
                config, requests, load_seconds=load, stop_seconds=stop, policy=name
            )
        except PolicyUnavailable as exc:
            comparison.errors[name] = str(exc)
    if args.json:
        print(json.dumps(to_json(comparison), indent=2))
    elif args.csv:
        sys.stdout.write(to_csv(comparison.ran()))
    else:
        sys.stdout.write(render_table(comparison))
    for name, message in comparison.errors.items():
        print(f"llamaswap simulate: policy {name}: {message}", file=sys.stderr)
    if args.plot:
        notice = plot_timeline(comparison.ran(), args.plot)
        if notice:
            print(notice, file=sys.stderr)
    return EXIT_INVALID if comparison.errors else EXIT_OK
