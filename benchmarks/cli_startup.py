"""How long `torchrig --help` takes, as a ratio of `python -c "import torch"`.

The CLI must answer help without importing torch or any plugin (target ratio < 0.3). Both
commands run as fresh processes, interleaved, several times; medians are compared.

Run: ``python benchmarks/cli_startup.py [--repeats 7]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "torchrig --help": [sys.executable, "-m", "torchrig", "--help"],
    "import torch": [sys.executable, "-c", "import torch"],
}


def time_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 if the ratio misses 0.3")
    args = parser.parse_args()
    for cmd in COMMANDS.values():  # warm the file cache
        time_once(cmd)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            times[name].append(time_once(cmd))
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["torchrig --help"] / medians["import torch"]
    for name, median in medians.items():
        print(f"{name:<16} median {median * 1000:7.1f} ms over {args.repeats} runs")
    print(f"ratio torchrig --help / import torch = {ratio:.3f}  (target < 0.3: {'PASS' if ratio < 0.3 else 'FAIL'})")
    return 1 if args.check and ratio >= 0.3 else 0


if __name__ == "__main__":
    raise SystemExit(main())
