"""How fast does `decompose --help` start? Median wall time of N runs, each in a fresh process, against 0.5 s.

python benchmarks/startup.py            # 10 runs of `python -m decompose.cli --help`
python benchmarks/startup.py -n 20 --script      # the installed console script instead
python benchmarks/startup.py --why      # the slowest imports (python -X importtime)
python benchmarks/startup.py --check    # exit 1 when over the target (for CI)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 0.5


def command(use_script: bool, args: list[str]) -> list[str]:
    if use_script:
        script = shutil.which("decompose")
        if script is None:
            sys.exit("no `decompose` on PATH: pip install -e . first, or drop --script")
        return [script, *args]
    return [sys.executable, "-m", "decompose.cli", *args]


def time_once(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def slowest_imports(top: int = 15) -> list[tuple[float, str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "decompose.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]) / 1e6, parts[2].rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=10)
    parser.add_argument("--args", default="--help", help="arguments to time (default: --help)")
    parser.add_argument("--script", action="store_true", help="time the console script, not python -m")
    parser.add_argument("--why", action="store_true", help="also list the slowest imports")
    parser.add_argument("--check", action="store_true", help="exit 1 when the median is over the target")
    opts = parser.parse_args()

    cmd = command(opts.script, opts.args.split())
    baseline = statistics.median(time_once([sys.executable, "-c", "pass"]) for _ in range(max(3, opts.runs // 2)))
    time_once(cmd)  # warm the OS file cache and .pyc files
    times = [time_once(cmd) for _ in range(opts.runs)]
    median = statistics.median(times)
    verdict = "OK" if median <= TARGET_S else "OVER"
    print(
        f"`{' '.join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd))}`: median {median:.3f}s "
        f"(min {min(times):.3f}s, max {max(times):.3f}s, {opts.runs} runs); bare interpreter {baseline:.3f}s; "
        f"target {TARGET_S:.1f}s: {verdict}"
    )
    if opts.why:
        print("slowest imports (cumulative seconds):")
        for seconds, name in slowest_imports():
            print(f"  {seconds:7.3f}  {name}")
    return 1 if opts.check and median > TARGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
