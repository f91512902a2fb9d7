"""Idle memory: the RSS of `llamaswap run` with 200 models configured, none started.

Three figures from the same run, each the median of `--runs` processes measured once
they are ready and have idled for a second:
- baseline: a bare `python -c "import aiohttp, anyio, pydantic, yaml; ..."` idling, the
  RSS of an interpreter holding the libraries any such server loads;
- llamaswap with 1 model;
- llamaswap with 200 models (fake upstream commands with ${PORT}; no request comes, so
  nothing is ever started);
and from them the cost per configured model, (200 models - 1 model) / 199.

    python benchmarks/idle_rss.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import process_rss_bytes, save
from startup import llamaswap, stop, write_config

IDLE_SECONDS = 1.0
BASELINE = (
    "import aiohttp, anyio, pydantic, yaml, sys; "
    "print('ready', flush=True); sys.stdin.read()"  # idles until its stdin closes
)
MB = 1024 * 1024


def baseline_rss() -> int:
    process = subprocess.Popen(
        [sys.executable, "-c", BASELINE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"ready"
        time.sleep(IDLE_SECONDS)
        return process_rss_bytes(process.pid)
    finally:
        stop(process)


def llamaswap_rss(config: Path) -> int:
    with llamaswap(config) as (process, _):
        time.sleep(IDLE_SECONDS)
        return process_rss_bytes(process.pid)


def main(runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as workdir:
        configs = {n: write_config(Path(workdir) / f"models-{n}.yaml", n) for n in (1, 200)}
        samples: dict[str, list[int]] = {"baseline": [], "1": [], "200": []}
        for _ in range(runs):  # interleaved, so drift on a shared machine hits all alike
            samples["baseline"].append(baseline_rss())
            samples["1"].append(llamaswap_rss(configs[1]))
            samples["200"].append(llamaswap_rss(configs[200]))
    median = {name: statistics.median(values) / MB for name, values in samples.items()}
    per_model_kb = (median["200"] - median["1"]) * 1024 / 199
    result = {
        "runs": runs,
        "baseline_libraries_rss_mb": median["baseline"],
        "llamaswap_1_model_rss_mb": median["1"],
        "llamaswap_200_models_rss_mb": median["200"],
        "over_baseline_1_model_mb": median["1"] - median["baseline"],
        "over_baseline_200_models_mb": median["200"] - median["baseline"],
        "per_model_kb": per_model_kb,
        "samples_mb": {k: [round(v / MB, 1) for v in vs] for k, vs in samples.items()},
    }
    print(f"baseline (python + aiohttp, anyio, pydantic, yaml): {median['baseline']:6.1f} MB")
    print(f"llamaswap, 1 model:                                 {median['1']:6.1f} MB")
    print(f"llamaswap, 200 models:                              {median['200']:6.1f} MB")
    print(f"per configured model:                               {per_model_kb:6.1f} KB")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    save("idle_rss", main(options.runs))
