"""Peak RSS of a process that syncs one server (mcp_server_sync on PostgreSQL), read from /proc/self/status.

Each size runs in a fresh subprocess, so the peak (VmHWM) is that sync's alone.

    .venv/bin/python -m bench.memory [--sizes 1000,5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench import common


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(url: str, tools: int) -> None:
    """Runs in the subprocess: set up Django, sync once, print the peaks as JSON."""
    common.django_setup(os.environ["DATABASE_URL"], MCP_OUTBOUND_ALLOWLIST="127.0.0.1")
    from bench import seed
    from integrations import mcp  # noqa: F401 - imported before the baseline is read
    from mcp_servers import services

    common.like_a_worker_process()

    organization, _ = seed.admin_access(f"bench-memory-{tools}")
    server = seed.server_row(organization, url, f"mem_{tools}")
    before = _status_kib("VmHWM")
    outcome = services.mcp_server_sync(server_id=server.pk)
    after = _status_kib("VmHWM")
    print(json.dumps({"outcome": str(outcome), "before_kib": before, "peak_kib": after}))


HEADERS = ["tools", "outcome", "VmHWM before sync MiB", "VmHWM after sync MiB", "sync's share MiB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--child", nargs=2, metavar=("URL", "TOOLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    rows = []
    with common.database() as db_url:
        for size in [int(s) for s in args.sizes.split(",")]:
            with common.mcp_server(size) as url:
                result = subprocess.run(
                    [sys.executable, "-m", "bench.memory", "--child", url, str(size)],
                    cwd=common.REPO_ROOT,
                    env={**os.environ, "DATABASE_URL": db_url},
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=True,
                )
            data = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append(
                [
                    size,
                    data["outcome"],
                    f"{data['before_kib'] / 1024:.1f}",
                    f"{data['peak_kib'] / 1024:.1f}",
                    f"{(data['peak_kib'] - data['before_kib']) / 1024:.1f}",
                ]
            )
    print("\n## Peak RSS of a syncing process (one sync per fresh process)")
    print(common.table(HEADERS, rows))


if __name__ == "__main__":
    main()
