"""`vgpu-fix fix` on the live root of each fixable host kind ends at the `service` level: in a private
mount+pid namespace with journald and a real `systemd --user` (ns_fix.sh, on ns_manager.sh), the host
of tests/native/host_kinds.py runs a stand-in ollama.service that logs v0.32.15's real "inference
compute" lines (tests/reliability/standin_lines): the CPU line until its environment lets the loader
find the CUDA driver library, the GPU line after. fix chooses, applies, restarts the unit, and the
restarted process's own line decides."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.native.build import build_native
from tests.native.host_kinds import FIXABLE
from tests.reliability import namespace
from tests.reliability.harness import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]
PROFILES = {"library-path": "h100-vgpu", "preload": "h100-vgpu-preload", "cuda13-only": "h100-vgpu-cuda13",
            "below-gate": "h100-vgpu", "passthrough": "passthrough-gpu"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The gcc-built fakes, indexed by key in a file the namespace script hands to host_kinds."""
    native = build_native(tmp_path_factory.mktemp("native"))
    path = tmp_path_factory.mktemp("native-index") / "native.json"
    path.write_text(json.dumps({k: str(v) for k, v in native.items()}))
    return path


def run_fix(tmp_path: Path, built: Path, kind: str, mode: str = "auto") -> tuple[int, dict, Path]:
    """ns_fix.sh for one host kind: (fix's exit code, its JSON document, the folder of everything it kept)."""
    namespace.require()
    out, work = tmp_path / "out", tmp_path / "ns"
    out.mkdir()
    work.mkdir()
    proc, _ = namespace.run("ns_fix.sh", REPO, str(built), os.environ.get("VGPU_FIX_LLAMA_SERVER", ""), kind,
                            str(out), str(work), mode, timeout=300)
    if not (out / "finished").exists():
        namespace.early_failure("ns_fix.sh", proc, str(out / "manager.log"), str(out / "fix.err"))
    return int((out / "fix.rc").read_text()), json.loads((out / "fix.json").read_text()), out


@pytest.mark.parametrize("kind", FIXABLE)
def test_fix_ends_at_the_service_level(tmp_path, built, kind):
    rc, doc, out = run_fix(tmp_path, built, kind)
    assert rc == 0, (doc["msg"], (out / "fix.err").read_text()[-2000:])
    assert doc["profile"] == PROFILES[kind] and doc["choices"]["scope"] == "user"
    assert doc["proof"]["asked"] == "service" and doc["proof"]["reached"] == "service"
    assert doc["proof"]["outcome"] == "passed"
    service = next(c for c in doc["verify"]["checks"] if c["name"] == "service")
    assert service["status"] == "pass" and "library=CUDA" in service["summary"], service
    lines = {e["id"]: e["line"] for e in doc["evidence"]["lines"]}
    before = "logged a GPU with driver 13" if kind == "passthrough" else "log names no GPU driver"  # its CPU line
    assert before in lines["log"]  # what the service logged before the fix (a bound driver: the GPU already)
    if os.environ.get("VGPU_FIX_LLAMA_SERVER"):  # the real llama-server in lib/ollama: verify's model agrees
        assert doc["verify"]["overruled"] == [], [(c["name"], c["summary"]) for c in doc["verify"]["checks"]]
    assert doc["generation"] == 1 and "zz-vgpu-fix.conf" in (out / "dropins").read_text()
    recorded = json.loads((out / "history.json").read_text())["fix"]  # the generation keeps the choice
    assert recorded == {"profile": PROFILES[kind], "variables": doc["choices"]["variables"], "scope": "user"}
    status = json.loads((out / "status.json").read_text())  # judged against what fix applied, not h100-vgpu's defaults
    assert (status["profile"], status["drift"]["pending"]) == (PROFILES[kind], 0), status["msg"]
    # Asked first: without --yes and without a terminal it refused, changing nothing.
    assert int((out / "unconfirmed.rc").read_text()) == 11
    assert "zz-vgpu-fix.conf" not in (out / "unconfirmed.dropins").read_text()


def test_a_restarted_service_still_on_the_cpu_rolls_fix_back_with_doctors_reading(tmp_path, built):
    """The choice is right by every file the model reads, but the restarted service logs the CPU line."""
    rc, doc, out = run_fix(tmp_path, built, "library-path", mode="cpu")
    assert rc == 6 and doc["exit_code"] == 6 and "rolled back" in doc["msg"], doc["msg"]
    assert doc["choices"]["profile"] == "h100-vgpu" and doc["evidence"]["lines"]  # what was chosen, and from what
    service = next(c for c in doc["verify"]["checks"] if c["name"] == "service")
    assert service["status"] == "fail" and "fell back to the CPU" in service["summary"]
    assert any(line.startswith("doctor: ") for line in service["evidence"])
    assert "zz-vgpu-fix.conf" not in (out / "dropins").read_text()
