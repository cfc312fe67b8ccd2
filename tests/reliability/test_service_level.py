"""The service level on a live root: after apply restarts ollama.service, the restarted process's own
"inference compute" lines decide. In a private mount+pid namespace with journald and a real `systemd
--user`, a stand-in ollama.service logs each Ollama generation's real lines (tests/reliability/
standin_lines, written as v0.24.0 and v0.32.15 log them): apply keeps its changes only on the GPU line
and rolls back on a CPU fallback, a crash loop or silence, within the budget it was given; the
previous instance always logged the GPU line, which must never count for the restarted one."""

from __future__ import annotations

import json

import pytest

from tests.reliability import namespace
from tests.reliability.harness import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]
PROFILE = """name: service-level
extends: h100-vgpu
service:
  scope: user
"""
GENERATIONS = ("v0.24", "v0.32")
MODES = ("gpu", "cpu", "crash", "silent")
BUDGET_S = 8  # --service-timeout given to every apply
# mode -> (exit code, the service check's status, a phrase of its summary)
EXPECTED = {
    "gpu": (0, "pass", "reports 1 GPU(s), library=CUDA"),
    "cpu": (6, "fail", "fell back to the CPU"),
    "crash": (6, "fail", "exited before discovery finished"),
    "silent": (6, "fail", f"no \"inference compute\" line from ollama.service within {BUDGET_S} s"),
}
CASES = [f"{g}:{m}" for g in GENERATIONS for m in MODES]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    why = namespace.usable()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("service-level")
    out, work = tmp / "out", tmp / "ns"
    out.mkdir()
    work.mkdir()
    (tmp / "service-level.yaml").write_text(PROFILE)
    proc, _ = namespace.run("ns_service_level.sh", REPO, str(tmp / "service-level.yaml"), str(out), str(work),
                            *CASES, timeout=900)
    if proc.returncode != 0 and not (out / "finished").exists():
        namespace.early_failure("ns_service_level.sh", proc, str(out / "manager.log"))
    assert (out / "finished").exists(), proc.stderr[-3000:]

    def case(name: str) -> dict:
        def read(suffix: str) -> str:
            return (out / f"{name.replace(':', '-')}.{suffix}").read_text()

        rolled = out / f"{name.replace(':', '-')}.rollback.json"
        return {"rc": int(read("rc")), "doc": json.loads(read("json")), "stderr": read("err"), "ms": int(read("ms")),
                "dropins": read("dropins"),
                "rollback": json.loads(rolled.read_text()) if rolled.exists() else None}

    return {c: case(c) for c in CASES}


def _service(report: dict) -> dict:
    return next(c for c in report["checks"] if c["name"] == "service")


@pytest.mark.parametrize("case", CASES)
def test_the_restarted_service_decides_whether_apply_keeps_its_changes(runs, case):
    mode = case.split(":")[1]
    code, status, phrase = EXPECTED[mode]
    run = runs[case]
    assert run["rc"] == code, run["doc"].get("msg")
    report = run["doc"]["verify"]
    service = _service(report)
    assert service["status"] == status and phrase in service["summary"], service
    assert run["ms"] < (BUDGET_S + 40) * 1000  # judged within the budget (plus the rollback's own check)
    if mode == "gpu":
        assert run["doc"]["proof"] == {"asked": "service", "reached": "service", "outcome": "passed",
                                       "not_reached": run["doc"]["proof"]["not_reached"]}
        assert "zz-vgpu-fix.conf" in run["dropins"]  # the changes were kept
        assert "passed at service" in run["doc"]["msg"]
    else:
        assert report["outcome"] == "failed" and report["asked"] == "service"
        assert "zz-vgpu-fix.conf" not in run["dropins"]  # rolled back
        assert run["doc"]["exit_code"] == 6 and "rolled back" in run["doc"]["msg"]
        assert "doctor: " in " ".join(service["evidence"])  # doctor's reading of what the process logged
        # The restored service was checked the same way: its (pre-apply) instance reports the GPU.
        after = _service(run["doc"]["verify_after_rollback"])
        assert after["status"] == "pass", after


@pytest.mark.parametrize("generation", GENERATIONS)
def test_a_silent_restart_never_passes_on_the_previous_instance_gpu_line(runs, generation):
    """Before the apply, every instance logged the GPU line; the restarted one says nothing."""
    run = runs[f"{generation}:silent"]
    service = _service(run["doc"]["verify"])
    assert service["status"] == "fail" and not any("library" in line for line in service["evidence"])
    assert run["ms"] >= BUDGET_S * 1000  # it waited the whole budget before judging


def test_a_rollback_reports_what_the_restored_service_decided(runs):
    rollback = runs["v0.32:gpu"]["rollback"]
    assert rollback is not None and rollback["failed"] is False
    assert rollback["proof"]["asked"] == "service" and rollback["proof"]["reached"] == "service"
    assert "the restored service: passed at service" in rollback["msg"]
