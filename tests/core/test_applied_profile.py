"""Commands run without --profile judge the host against the profile and --set variables of the newest
applied generation (recorded in it, with a resolved copy), not the default profile: `status` (text, JSON,
Prometheus), `plan`, `watch status`, a later `apply`; --profile still wins, and --set overrides the
recorded variables."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fixer import core, profiles

CUDA13 = ("--profile", "h100-vgpu-cuda13", "--set", "shim_dir=/opt/vgpu/lib")


@pytest.fixture
def applied_cuda13(cli, seed_root):
    result = cli("apply", "--root", seed_root, *CUDA13, "--no-verify")
    assert result.returncode == 0, result.stderr
    return seed_root


def test_the_generation_records_the_profile_its_source_and_variables(applied_cuda13):
    profile, about = core.applied_profile(applied_cuda13)
    assert about["generation"] == 1 and profile.name == "h100-vgpu-cuda13"
    assert about["origin"]["ref"] == "h100-vgpu-cuda13" and about["origin"]["vars"] == {"shim_dir": "/opt/vgpu/lib"}
    assert about["origin"]["path"].endswith("/h100-vgpu-cuda13.yaml")
    # the copy is the profile as applied, key order included (the drop-in's environment order counts)
    fresh = profiles.load("h100-vgpu-cuda13", applied_cuda13, {"shim_dir": "/opt/vgpu/lib"})
    assert json.dumps(profile.model_dump(mode="json")) == json.dumps(fresh.model_dump(mode="json"))


@pytest.mark.parametrize("args, converged", [
    (("status", "--json"), lambda out: json.loads(out)["drift"] == {"pending": 0, "conflicts": 0, "paths": []}),
    (("status",), lambda out: "drift: none (converged)" in out and "--set shim_dir=/opt/vgpu/lib" in out),
    (("plan", "--json"), lambda out: json.loads(out)["profile"] == "h100-vgpu-cuda13"),
    (("apply", "--no-verify"), lambda out: "no changes: host already converged" in out),
    (("watch", "status", "--json"), lambda out: "/usr/local/lib/ollama/cuda_v13" in json.loads(out)["watched"]),
], ids=["status-json", "status-text", "plan", "apply", "watch-status"])
def test_without_profile_a_command_uses_the_applied_profile(cli, applied_cuda13, args, converged):
    result = cli(*args, "--root", applied_cuda13)
    assert result.returncode == 0, result.stdout + result.stderr
    assert converged(result.stdout), result.stdout


def test_the_prometheus_textfile_reports_no_drift_against_the_applied_profile(cli, applied_cuda13, tmp_path):
    out = tmp_path / "vgpu_fix.prom"
    assert cli("status", "--root", applied_cuda13, "--prometheus", str(out)).returncode == 0
    labels = f'profile="h100-vgpu-cuda13",root="{applied_cuda13}"'
    assert f"vgpu_fix_drift{{{labels}}} 0" in out.read_text()


def test_an_explicit_profile_still_wins(cli, applied_cuda13):
    doc = json.loads(cli("status", "--root", applied_cuda13, "--profile", "h100-vgpu", "--json").stdout)
    assert doc["profile"] == "h100-vgpu" and doc["drift"]["pending"] == 3


def test_set_without_profile_reloads_the_applied_source_with_the_recorded_variables_under_it(cli, applied_cuda13):
    doc = json.loads(cli("plan", "--root", applied_cuda13, "--set", "cuda_library=cuda_v12", "--json").stdout)
    [dropin] = doc["diff"]
    assert doc["profile"] == "h100-vgpu-cuda13" and dropin["before_header"].startswith("/etc/systemd/system/")
    assert 'OLLAMA_LLM_LIBRARY=cuda_v13' in dropin["before"] and 'OLLAMA_LLM_LIBRARY=cuda_v12' in dropin["after"]
    assert "LD_LIBRARY_PATH=/opt/vgpu/lib:" in dropin["after"]  # the recorded shim_dir still applies


def test_a_profile_given_as_text_is_reused_from_its_copy_but_cannot_take_set(cli, seed_root):
    text = profiles.locate("h100-vgpu-cuda13", seed_root).read_text()
    applied = _piped(text, "apply", "--root", seed_root, "--profile", "-", "--no-verify")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(cli("status", "--root", seed_root, "--json").stdout)["drift"]["pending"] == 0
    refused = cli("plan", "--root", seed_root, "--set", "cuda_library=cuda_v12")
    assert refused.returncode == 3 and "was given as text" in refused.stderr


def test_without_an_applied_generation_the_default_profile_is_used(cli, seed_root):
    assert json.loads(cli("status", "--root", seed_root, "--json").stdout)["profile"] == "h100-vgpu"


def test_after_a_rollback_the_previous_applied_generation_counts(cli, applied_cuda13):
    assert cli("apply", "--root", applied_cuda13, "--profile", "h100-vgpu", "--no-verify").returncode == 0
    assert json.loads(cli("status", "--root", applied_cuda13, "--json").stdout)["profile"] == "h100-vgpu"
    assert cli("rollback", "--root", applied_cuda13).returncode == 0
    doc = json.loads(cli("status", "--root", applied_cuda13, "--json").stdout)
    assert doc["profile"] == "h100-vgpu-cuda13" and doc["drift"]["pending"] == 0


def _piped(text: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fixer", *args], input=text, capture_output=True, text=True,
                          timeout=120)
