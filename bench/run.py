"""Run every benchmark on one throwaway PostgreSQL database and print their tables (``make bench``).

    .venv/bin/python -m bench.run [--quick]

Each benchmark runs as its own subprocess and stops every process it starts; the database is dropped at the end.
The tables also go to var/bench-latest.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench import common

BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    # (module, arguments, --quick arguments)
    ("bench.sync", ["--runs", "15"], ["--sizes", "10,1000", "--runs", "3"]),
    ("bench.queries", [], []),
    ("bench.memory", [], ["--sizes", "1000"]),
    (
        "bench.http",
        ["--workers", "2", "--requests", "2000"],
        ["--requests", "300", "--list-requests", "40", "--floor-requests", "300"],
    ),
    ("bench.calls", ["--calls", "400"], ["--calls", "100"]),
    ("bench.endpoint", ["--calls", "300", "--lists", "20"], ["--calls", "60", "--lists", "4", "--modes", "auto"]),
]
TIMEOUT_SECONDS = 420


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sizes, runs and requests (a smoke test)")
    args = parser.parse_args()
    started = time.monotonic()
    calibration = f"calibration: {common.calibration_ms():.0f} ms (a fixed pure-Python loop; lower is a faster machine)"
    print(calibration, flush=True)
    outputs = [calibration + "\n"]
    with common.database() as url:
        env = {**os.environ, "BENCH_DATABASE_URL": url}
        for module, full, quick in BENCHMARKS:
            command = [sys.executable, "-m", module, *(quick if args.quick else full)]
            print(f"$ {' '.join(['.venv/bin/python', *command[1:]])}", flush=True)
            begun = time.monotonic()
            result = subprocess.run(
                command, cwd=common.REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
            )
            if result.returncode != 0:
                sys.stderr.write(result.stderr[-4000:])
                raise SystemExit(f"{module} failed with exit code {result.returncode}")
            tables = result.stdout[result.stdout.index("\n## ") :].strip()
            print(tables + f"\n\n({module}: {time.monotonic() - begun:.0f} s)\n", flush=True)
            outputs.append(f"`{' '.join(['.venv/bin/python', *command[1:]])}`\n\n{tables}\n")
    total = time.monotonic() - started
    print(f"all benchmarks: {total:.0f} s")
    (common.REPO_ROOT / "var").mkdir(exist_ok=True)
    (common.REPO_ROOT / "var" / "bench-latest.md").write_text("\n".join(outputs) + f"\nTotal: {total:.0f} s\n")


if __name__ == "__main__":
    main()
