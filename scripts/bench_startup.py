"""Benchmark: cold `vgpu-fix plan` on a small host against the import floor of the stack it is built on.

The floor is `python -c "import typer; from pydantic import BaseModel; from ruamel.yaml import YAML"`;
the target is a ratio of at most 1.25 (medians over interleaved runs). Prints both medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FLOOR = "import typer; from pydantic import BaseModel; from ruamel.yaml import YAML"


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from fixer.demo import build_seed_host

    root = tempfile.mkdtemp(prefix="vgpu-bench-")
    try:
        build_seed_host(root)
        # An installed tool runs from byte-code (pip compiles wheels at install time); let the warm-up
        # runs write it for an editable checkout too. Any non-empty value would disable writing.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["NO_COLOR"] = "1"
        floor_cmd = [sys.executable, "-c", FLOOR]
        plan_cmd = [sys.executable, "-m", "fixer", "plan", "--root", root]
        for _ in range(3):  # warm the page cache and byte-code caches for both
            timed(floor_cmd, env)
            timed(plan_cmd, env)
        floor, plan = [], []
        for _ in range(args.runs):
            floor.append(timed(floor_cmd, env))
            plan.append(timed(plan_cmd, env))
        f, p = statistics.median(floor), statistics.median(plan)
        print(f"python: {sys.version.split()[0]}  runs: {args.runs} interleaved")
        print(f"import floor (typer + pydantic + ruamel.yaml): median {f * 1000:.1f} ms")
        print(f"vgpu-fix plan on the seed host:                median {p * 1000:.1f} ms")
        print(f"ratio: {p / f:.2f} (target <= 1.25)")
        return 0 if p / f <= 1.25 else 1
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    sys.exit(main())
