"""A playbook ships its profile (`profile_content`, the role's `deploy_profile_src`), validated on the
target before anything is written; `vgpufix.vgpu.vgpu_fix_facts` gives `vgpu-fix status` as a fact and
a fleet report can be built from it."""

from __future__ import annotations

import json

import pytest

from fixer.demo import snapshot_tree
from tests.ansible.test_module import apply_task, whole_tree

pytestmark = pytest.mark.slow
SHIPPED = "name: lab\nextends: h100-vgpu\nservice:\n  environment:\n    OLLAMA_LOAD_TIMEOUT: 9m\n"


def test_profile_content_is_applied_like_a_profile_on_the_target(ansible):
    root = ansible.host("alpha")
    run = ansible.play([apply_task(profile_content=SHIPPED)])
    assert run.rc == 0, run.output
    result = run.result()
    assert result["changed"] and result["profile"] == "lab" and result["generation"] == 1
    dropin = open(f"{root}/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf").read()
    assert "OLLAMA_LOAD_TIMEOUT=9m" in dropin and "profile lab" in dropin


def test_an_invalid_shipped_profile_fails_with_its_location_and_writes_nothing(ansible):
    root = ansible.host("alpha")
    before = whole_tree(root)
    run = ansible.play([apply_task(profile_content="name: bad\nextends: h100-vgpu\nservice:\n  enviroment: {}\n")])
    assert run.rc != 0
    result = run.result()
    assert result["failed"] and "profile_content:4:3: service.enviroment: unknown key 'enviroment'; did you mean " \
                                 "`environment`?" in result["msg"]
    assert whole_tree(root) == before


def test_profile_and_profile_content_are_mutually_exclusive(ansible):
    ansible.host("alpha")
    run = ansible.play([apply_task(profile="h100-vgpu", profile_content=SHIPPED)])
    assert run.rc != 0 and "mutually exclusive" in run.result()["msg"]


def test_the_facts_module_reports_status_and_a_fleet_report_reads_it(ansible, tmp_path):
    ansible.host("alpha")
    ansible.host("beta")
    prom = tmp_path / "{{ inventory_hostname }}.prom"
    tasks = [
        apply_task(),
        {"name": "facts", "vgpufix.vgpu.vgpu_fix_facts": {"root": "{{ vgpu_root }}", "prometheus": str(prom)},
         "register": "facts"},
        {"name": "report", "ansible.builtin.set_fact": {
            "report": "{{ inventory_hostname }}: generation {{ vgpu_fix.applied.generation }}, "
                      "drift {{ vgpu_fix.drift.pending }}, ollama {{ vgpu_fix.ollama.generation }}"},
         "register": "report"},
    ]
    run = ansible.play(tasks)
    assert run.rc == 0, run.output
    for host in ("alpha", "beta"):
        facts = run.result(host, "facts")["ansible_facts"]["vgpu_fix"]
        assert facts["applied"]["generation"] == 1 and facts["drift"]["pending"] == 0
        assert facts["ollama"]["generation"] == "runner-engine" and facts["watch"]["installed"] is False
        assert run.result(host, "report")["ansible_facts"]["report"] == (
            f"{host}: generation 1, drift 0, ollama runner-engine")
        assert "vgpu_fix_generation{profile=\"h100-vgpu\"" in (tmp_path / f"{host}.prom").read_text()


def test_the_facts_module_changes_nothing(ansible):
    root = ansible.host("alpha")
    before = snapshot_tree(root, exclude=())
    run = ansible.play([{"name": "facts", "vgpufix.vgpu.vgpu_fix_facts": {"root": "{{ vgpu_root }}"},
                         "register": "facts"}])
    assert run.rc == 0 and run.result(name="facts")["changed"] is False
    assert snapshot_tree(root, exclude=()) == before
    assert json.dumps(run.result(name="facts")["ansible_facts"]["vgpu_fix"]["last_verify"]) == "null"


@pytest.mark.parametrize("applied", [
    {"profile": "h100-vgpu-cuda13", "vars": {"shim_dir": "/opt/vgpu/lib"}},
    {"profile_content": SHIPPED},
], ids=["named-profile-with-vars", "shipped-profile"])
def test_the_facts_module_judges_drift_against_the_applied_profile(ansible, tmp_path, applied):
    """After an apply of another profile than the default, facts without `profile` report no drift."""
    root = ansible.host("alpha")
    prom = tmp_path / "alpha.prom"
    tasks = [apply_task(**applied),
             {"name": "facts", "vgpufix.vgpu.vgpu_fix_facts": {"root": "{{ vgpu_root }}", "prometheus": str(prom)},
              "register": "facts"}]
    run = ansible.play(tasks)
    assert run.rc == 0, run.output
    facts = run.result(name="facts")["ansible_facts"]["vgpu_fix"]
    name = applied.get("profile", "lab")
    assert facts["profile"] == name and facts["drift"] == {"pending": 0, "conflicts": 0, "paths": []}
    assert facts["applied"]["vars"] == applied.get("vars", {})
    drift = [line for line in prom.read_text().splitlines() if line.startswith("vgpu_fix_drift{")]
    assert drift == [f'vgpu_fix_drift{{profile="{name}",root="{root}"}} 0']
