#!/usr/bin/env python3
"""Rerunnable figures for docs/reliability.md: crash points, hostile-input cases, concurrent runs.

    python scripts/reliability_report.py            # everything (root adds the mount cases)
    python scripts/reliability_report.py --runner subprocess   # crash matrix with fresh interpreters
    python scripts/reliability_report.py --json report.json

Exit status 0 only when every crash point recovered, every case behaved and the concurrency runs
converged with exactly one generation.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.reliability import harness  # noqa: E402
from tests.reliability.cases_runner import load_case, observe, observe_in_namespace  # noqa: E402


def crash_figures(work: str, runner: str) -> dict:
    start = time.monotonic()
    matrix = harness.run_matrix(os.path.join(work, "crash"), runner=runner, processes=2)
    out = {"runner": runner, "seconds": round(time.monotonic() - start, 1)}
    for command, cases in matrix.items():
        out[command] = {
            "crash_points": len(cases),
            "step_kinds": sorted({c.step.split("#")[0] for c in cases}),
            "left_open_generation": sum(c.interrupted for c in cases),
            "failures": [f"{c.step}: {p}" for c in cases for p in c.problems()],
        }
    out["total_crash_points"] = sum(len(c) for c in matrix.values())
    out["recovery_runs"] = out["total_crash_points"] * 2  # rollback path and apply-then-rollback path
    return out


def case_figures(work: str) -> dict:
    from tests.reliability.test_hostile_inputs import CASES, can_mount

    by_exit: collections.Counter = collections.Counter()
    failures, skipped = [], []
    for index, path in enumerate(CASES):
        case, name = load_case(path), os.path.basename(path)[:-5]
        if case.get("mount") and not can_mount():
            skipped.append(name)
            continue
        directory = os.path.join(work, f"case{index}")
        os.makedirs(directory)
        seen = observe_in_namespace(path, directory) if case.get("mount") else observe(case, directory)
        expected = case["expect"]["exit"]
        by_exit[seen["rc"]] += 1
        if seen["rc"] != expected or not seen["outside_unchanged"] or seen["temp_files"] or \
                (expected != 0 and not seen["tree_unchanged"]):
            failures.append(f"{name}: exit {seen['rc']} (expected {expected})")
        shutil.rmtree(directory, ignore_errors=True)
    return {"cases": len(CASES), "run": len(CASES) - len(skipped), "skipped": skipped,
            "by_exit_code": dict(sorted(by_exit.items())), "failures": failures}


def concurrency_figures(work: str) -> dict:
    from tests.reliability.test_concurrency import RUNS, simultaneous

    out = {}
    for label, extra in (("fail_fast", ()), ("lock_timeout", ("--lock-timeout", "60"))):
        tmp = pathlib.Path(work) / label
        tmp.mkdir(parents=True)
        root = harness.seed(str(tmp / "root"))
        results = simultaneous(root, tmp, extra)
        out[label] = {
            "runs": RUNS,
            "changed_host": sum(1 for r in results if r["rc"] == 0 and r["doc"]["changed"]),
            "refused_exit_8": sum(1 for r in results if r["rc"] == 8),
            "converged_no_change": sum(1 for r in results if r["rc"] == 0 and not r["doc"]["changed"]),
            "generations": harness.generation_statuses(root),
            "slowest_seconds": round(max(r["seconds"] for r in results), 2),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", choices=sorted(harness.RUNNERS), default="fork")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="vgpu-fix-reliability-")
    try:
        report = {"crash": crash_figures(work, args.runner), "hostile_inputs": case_figures(work),
                  "concurrency": concurrency_figures(work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    crash, cases, conc = report["crash"], report["hostile_inputs"], report["concurrency"]
    print(f"crash points: {crash['total_crash_points']} (apply {crash['apply']['crash_points']}, "
          f"rollback {crash['rollback']['crash_points']}), each recovered two ways "
          f"({crash['recovery_runs']} recoveries), runner {crash['runner']}, {crash['seconds']} s; "
          f"failures: {len(crash['apply']['failures']) + len(crash['rollback']['failures'])}")
    print(f"hostile-input cases: {cases['cases']} ({cases['run']} run, {len(cases['skipped'])} skipped), "
          f"by exit code {cases['by_exit_code']}; failures: {len(cases['failures'])}")
    for label, fig in conc.items():
        print(f"concurrency ({label}): {fig['runs']} simultaneous applies -> {fig['changed_host']} changed the host, "
              f"{fig['refused_exit_8']} refused (exit 8), {fig['converged_no_change']} found it converged; "
              f"generations {fig['generations']}; slowest {fig['slowest_seconds']} s")
    for line in crash["apply"]["failures"] + crash["rollback"]["failures"] + cases["failures"]:
        print("FAIL", line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    ok = (not crash["apply"]["failures"] and not crash["rollback"]["failures"] and not cases["failures"]
          and all(f["changed_host"] == 1 and f["generations"] == ["applied"] for f in conc.values()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
