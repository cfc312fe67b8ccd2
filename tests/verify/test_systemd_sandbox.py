"""On a live root whose service manager runs, the probes run as transient units of that manager with
the unit's environment and sandbox: a real `systemd --user` (and journald) in a private mount+pid
namespace runs ollama.service (the stand-in `ollama serve`) on a good fake vGPU host whose unit hides
the shim directory. verify fails through systemd-run for the reason the service falls back to the CPU,
although the same probe outside the sandbox loads the backend; the drop-in from `apply` lifts the
restriction and verify, the service check included, passes. Nothing stays behind on the machine."""

from __future__ import annotations

import json
import os

import pytest

from tests.reliability import namespace
from tests.reliability.harness import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]
PROFILE = """name: sandboxed-user-unit
extends: h100-vgpu
service:
  scope: user
  directives:
    InaccessiblePaths: ""
"""
WATCHED = ("/etc/systemd/user/ollama.service", "/var/lib/vgpu-fix", "/opt/vgpu", "/usr/local/lib/ollama",
           "/usr/local/bin/ollama", "/etc/ld.so.conf.d/vgpu-fix.conf", "/etc/systemd/journald.conf.d/ns.conf")


@pytest.fixture(scope="module")
def scenario(native, tmp_path_factory):
    namespace.require()
    tmp = tmp_path_factory.mktemp("sandbox")
    out, work = tmp / "out", tmp / "ns"
    out.mkdir()
    work.mkdir()
    (tmp / "profile.yaml").write_text(PROFILE)
    (tmp / "native.json").write_text(json.dumps({k: str(v) for k, v in native.items()}))
    mounts_before, watched = namespace.mounts(), {p: os.path.lexists(p) for p in WATCHED}
    proc, name = namespace.run("ns_sandbox.sh", REPO, str(tmp / "profile.yaml"), str(out), str(work),
                               str(tmp / "native.json"), timeout=180)
    if (out / "skip").exists() or (proc.returncode != 0 and not (out / "restricted.rc").exists()):
        namespace.early_failure("ns_sandbox.sh", proc, str(out / "skip"), str(out / "manager.log"))
    assert proc.returncode == 0 and (out / "finished").exists(), proc.stderr[-3000:]
    return {"out": out, "name": name, "mounts": mounts_before, "watched": watched, "work": work}


def step(scenario, name: str) -> tuple[int, dict]:
    out = scenario["out"]
    rc = int((out / f"{name}.rc").read_text())
    text = (out / f"{name}.json").read_text()
    assert text.strip(), (out / f"{name}.err").read_text()
    return rc, json.loads(text)


def checks(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["verify"]["checks"]}


def test_the_probe_fails_through_systemd_run_for_the_reason_the_service_does(scenario):
    rc, doc = step(scenario, "restricted")
    assert rc == 9, doc
    found = checks(doc)
    assert found["static"]["status"] == "pass"  # the files are all there: configuration text looks right
    load = found["load"]
    assert load["status"] == "fail" and load["details"]["mode"] == "systemd"
    assert "libcuda.so.1: cannot open shared object file" in load["cause"]
    transient = load["details"]["transient"]
    assert transient["scope"] == "user" and transient["started"] and transient["result"] == "success"
    assert transient["properties"] == ["LimitMEMLOCK=64K", "InaccessiblePaths=/opt/vgpu/lib"]
    assert any("systemd-run --user: a transient unit with ollama.service's environment" in e and
               "InaccessiblePaths=/opt/vgpu/lib" in e for e in load["evidence"])
    assert found["runner"]["status"] == "fail" and found["runner"]["details"]["mode"] == "systemd"
    assert "reports no CUDA device" in found["runner"]["cause"]


def test_the_same_probe_outside_the_sandbox_loads_the_backend(scenario):
    outside = json.loads((scenario["out"] / "outside.json").read_text())
    assert outside["ok"] and outside["mode"] == "live" and outside["device_count"] == 1, outside["evidence"]


def test_the_service_itself_falls_back_to_the_cpu(scenario):
    service = checks(step(scenario, "restricted")[1])["service"]
    assert service["status"] == "fail" and "fell back to the CPU" in service["summary"]
    assert any('"library": "cpu"' in e for e in service["evidence"])


def test_the_drop_in_from_apply_lifts_the_restriction(scenario):
    rc, doc = step(scenario, "apply")
    assert rc == 0, doc
    assert doc["verify"]["ok"]  # apply's own verify ran through systemd-run too
    rc, doc = step(scenario, "fixed")
    assert rc == 0, doc
    found = checks(doc)
    assert {name: c["status"] for name, c in found.items()} == {
        "environment": "pass", "static": "pass", "load": "pass", "runner": "pass", "service": "pass", "model": "skip"}
    assert found["model"]["summary"].startswith("skipped: no --model given")
    properties = found["load"]["details"]["transient"]["properties"]
    assert properties[:2] == ["LimitMEMLOCK=64K", "LimitMEMLOCK=infinity"]  # replayed: the drop-in wins
    assert not any(p.startswith("InaccessiblePaths") for p in properties)  # reset by the drop-in
    # Capabilities are an opt-in (issue 12 item 4): none granted, the bounding set never narrowed.
    assert not any(p.startswith(("AmbientCapabilities", "CapabilityBoundingSet")) for p in properties)
    assert found["service"]["summary"] == "ollama.service reports 1 GPU(s), library=CUDA"


def test_a_hang_or_a_crash_inside_the_transient_unit_is_a_clean_failure(scenario):
    found = json.loads((scenario["out"] / "broken.json").read_text())
    hang, segv = found["cuda-shim-hang"], found["cuda-shim-segv"]
    assert hang["mode"] == "systemd" and hang["timed_out"] and hang["transient"]["result"] == "timeout"
    assert "hung in 'ggml_backend_init'" in hang["cause"] and hang["duration"] < 12
    assert segv["mode"] == "systemd" and segv["signal"] == "SIGSEGV"
    assert "crashed (SIGSEGV) in 'ggml_backend_init'" in segv["cause"]


def test_no_probe_unit_or_scratch_directory_outlives_its_probe(scenario):
    assert (scenario["out"] / "leftover.units").read_text().strip() == ""
    assert (scenario["out"] / "leftover.scratch").read_text().strip() == ""


def test_nothing_stays_behind_on_the_machine(scenario):
    name = scenario["name"]
    assert namespace.processes_in(name) == []
    assert namespace.cgroups(name) == []
    assert namespace.mounts() == scenario["mounts"]
    assert os.listdir(scenario["work"]) == []
    assert {p: os.path.lexists(p) for p in WATCHED} == scenario["watched"]
