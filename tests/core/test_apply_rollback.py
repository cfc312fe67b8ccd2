"""apply and rollback: journaled, atomic, idempotent, exactly reversible; real ldconfig and systemd-analyze."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from fixer import core, profiles
from fixer.apply import transaction as applier
from fixer.apply.journal import Journal
from fixer.errors import ApplyFailed, Conflict, InvalidInput
from tests import hosts
from tests.conftest import have

DROPIN = "etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf"


def load(root: str, name: str = "h100-vgpu"):
    return profiles.load(name, root)


def test_apply_then_plan_is_empty(seed_root):
    outcome = applier.apply(load(seed_root), seed_root)
    assert outcome.changed and outcome.generation == 1
    assert not core.make_plan(load(seed_root), seed_root).pending


def test_second_apply_changes_nothing_and_creates_no_generation(seed_root, snapshot):
    applier.apply(load(seed_root), seed_root)
    state_dir = os.path.join(seed_root, "var/lib/vgpu-fix")
    before = snapshot(seed_root, exclude=())
    outcome = applier.apply(load(seed_root), seed_root)
    assert not outcome.changed and outcome.generation is None
    assert len(Journal(seed_root).generations()) == 1
    after = snapshot(seed_root, exclude=())
    assert {k: v for k, v in after.items() if "lock" not in k} == {k: v for k, v in before.items() if "lock" not in k}
    assert os.stat(state_dir).st_mode & 0o777 == 0o700


def test_rollback_restores_the_exact_tree(seed_root, snapshot):
    os.chmod(os.path.join(seed_root, "etc/ld.so.preload"), 0o600)
    before = snapshot(seed_root)
    applier.apply(load(seed_root), seed_root)
    assert snapshot(seed_root) != before
    applier.rollback(seed_root)
    assert snapshot(seed_root) == before


def test_rollback_to_goes_back_several_generations(seed_root, snapshot):
    before = snapshot(seed_root)
    applier.apply(load(seed_root), seed_root)
    applier.apply(profiles.load("h100-vgpu", seed_root, {"load_timeout": "20m"}), seed_root)
    assert [g.status for g in Journal(seed_root).generations()] == ["applied", "applied"]
    applier.rollback(seed_root, to=1)
    assert snapshot(seed_root) == before
    assert [g.status for g in Journal(seed_root).generations()] == ["rolled_back", "rolled_back"]


def test_rollback_refuses_when_a_managed_path_changed_since_apply(seed_root):
    applier.apply(load(seed_root), seed_root)
    with open(os.path.join(seed_root, DROPIN), "a") as fh:
        fh.write("# hand edit\n")
    with pytest.raises(Conflict) as caught:
        applier.rollback(seed_root)
    assert any(DROPIN in line for line in caught.value.details)
    applier.rollback(seed_root, force=True)
    assert not os.path.exists(os.path.join(seed_root, DROPIN))


def test_rollback_with_nothing_applied_changes_nothing_and_says_so(seed_root):
    outcome = applier.rollback(seed_root)
    assert not outcome.changed and outcome.messages == ["nothing to roll back: vgpu-fix has not changed this root"]


def test_manifest_records_before_states_and_is_checksummed(seed_root):
    applier.apply(load(seed_root), seed_root)
    generation = Journal(seed_root).generations()[0]
    entries = {e.path: e for e in generation.entries}
    assert entries["/usr/local/lib/ollama/libggml-cuda.so"].to_dict() == {
        "path": "/usr/local/lib/ollama/libggml-cuda.so", "kind": "symlink", "target": "cuda_v12/libggml-cuda.so"}
    assert entries["/" + DROPIN].kind == "absent"
    assert entries["/etc/ld.so.preload"].kind == "file" and entries["/etc/ld.so.preload"].sha256
    manifest = os.path.join(generation.directory, "manifest.json")
    with open(manifest, "a") as fh:
        fh.write(" ")
    with pytest.raises(InvalidInput, match="was modified"):
        Journal(seed_root).load(1)
    intact, damaged = Journal(seed_root).scan()  # a damaged generation is named, never used, never fatal
    assert intact == [] and [d.number for d in damaged] == [1] and "was modified" in damaged[0].reason


def test_every_apply_and_rollback_is_audited(seed_root):
    applier.apply(load(seed_root), seed_root)
    applier.rollback(seed_root)
    events = [e["event"] for e in Journal(seed_root).audit_lines()]
    assert events == ["apply", "rollback"]


def test_saved_plan_applies_only_while_the_host_is_unchanged(seed_root, tmp_path):
    saved = str(tmp_path / "plan.json")
    prof = load(seed_root)
    core.save_plan(core.make_plan(prof, seed_root), prof, saved)
    with open(os.path.join(seed_root, "etc/systemd/system/ollama.service.d/override.conf"), "a") as fh:
        fh.write('Environment="LATE=1"\n')
    profile, plan = core.load_plan(saved)
    with pytest.raises(Conflict, match="stale"):
        core.apply(profile, seed_root, saved_plan=plan, verify=False)
    assert not Journal(seed_root).generations()


def test_saved_plan_applies_exactly(seed_root, tmp_path):
    saved = str(tmp_path / "plan.json")
    prof = load(seed_root)
    planned = core.make_plan(prof, seed_root)
    core.save_plan(planned, prof, saved)
    profile, plan = core.load_plan(saved)
    outcome = core.apply(profile, seed_root, saved_plan=plan, verify=False)
    assert [c.to_dict() for c in outcome.plan.pending] == [c.to_dict() for c in planned.pending]


def test_a_failure_mid_apply_restores_what_was_changed(seed_root, snapshot):
    # A directory where ldconfig must write its cache makes the post-action fail after every write.
    os.mkdir(os.path.join(seed_root, "etc/ld.so.cache"))
    before = snapshot(seed_root)
    with pytest.raises(ApplyFailed, match="ldconfig"):
        applier.apply(load(seed_root), seed_root)
    assert snapshot(seed_root) == before
    assert [g.status for g in Journal(seed_root).generations()] == ["failed"]


@pytest.mark.skipif(not have("ldconfig"), reason="needs ldconfig")
def test_ld_cache_built_for_the_root_contains_the_profile_directories(seed_root):
    source = os.path.join(seed_root, "s.c")
    with open(source, "w") as fh:
        fh.write("int cuInit(unsigned flags) { return flags ? 1 : 0; }\n")
    shim = os.path.join(seed_root, "opt/vgpu/lib/libvgpu-cuda.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", shim, source], check=True)
    os.unlink(source)
    applier.apply(load(seed_root), seed_root)
    listing = subprocess.run(["ldconfig", "-p", "-C", os.path.join(seed_root, "etc/ld.so.cache")],
                             capture_output=True, text=True, check=True).stdout
    assert "libcuda.so.1 (libc6,x86-64) => /usr/local/lib/vgpu-fix/libcuda.so.1" in listing


SYSTEMD_STUBS = ["sysinit.target", "basic.target", "shutdown.target", "network-online.target",
                 "default.target", "sockets.target", "paths.target", "timers.target", "slices.target"]


def systemd_analyze(root: str) -> subprocess.CompletedProcess:
    stub_dir = os.path.join(root, "usr/lib/systemd/system")
    os.makedirs(stub_dir, exist_ok=True)
    for target in SYSTEMD_STUBS:
        with open(os.path.join(stub_dir, target), "w") as fh:
            fh.write(f"[Unit]\nDescription={target}\n")
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "ollama.service"],
                          capture_output=True, text=True)


@pytest.mark.skipif(not have("systemd-analyze"), reason="needs systemd-analyze")
@pytest.mark.parametrize("name", ["h100-vgpu", "h100-vgpu-preload", "h100-vgpu-cuda13", "passthrough-gpu"])
def test_written_dropins_pass_systemd_analyze_without_warnings(seed_root, name):
    (hosts.real_gpu if name == "passthrough-gpu" else hosts.shim_guest)(seed_root)
    applier.apply(profiles.load(name, seed_root), seed_root)
    result = systemd_analyze(seed_root)
    assert result.returncode == 0
    assert "vgpu-fix" not in result.stderr and result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(not have("systemd-analyze"), reason="needs systemd-analyze")
def test_systemd_analyze_does_flag_a_bad_dropin(seed_root):
    with open(os.path.join(seed_root, "etc/systemd/system/ollama.service.d/zz-bad.conf"), "w") as fh:
        fh.write("[Service]\nFrobnicate=1\n")
    assert "Unknown key" in systemd_analyze(seed_root).stderr


def test_written_values_round_trip_through_the_probe(seed_root, tmp_path):
    tricky = 'quote " back \\ percent %h dollar $HOME tab\tend'
    path = tmp_path / "t.yaml"
    path.write_text(json.dumps({"extends": "h100-vgpu", "name": "t", "service": {"environment": {"TRICKY": tricky}}}))
    applier.apply(profiles.load(str(path), seed_root), seed_root)
    from fixer.facts.host import probe_unit

    assert probe_unit(seed_root, "ollama.service").environment.effective()["TRICKY"] == tricky


def test_cli_exit_codes_follow_the_contract(seed_root, cli):
    assert cli("plan", "--root", seed_root).returncode == 4
    applied = cli("apply", "--root", seed_root, "--no-verify", "--json")
    assert applied.returncode == 0, applied.stderr
    doc = json.loads(applied.stdout)
    assert doc["changed"] is True and doc["generation"] == 1 and doc["format_version"] == 1
    assert cli("plan", "--root", seed_root).returncode == 0
    again = json.loads(cli("apply", "--root", seed_root, "--no-verify", "--json").stdout)
    assert again["changed"] is False and again["generation"] is None
    assert cli("rollback", "--root", seed_root).returncode == 0
    assert cli("plan", "--root", seed_root, "--profile", str(seed_root) + "/nope.yaml").returncode == 3


def test_plan_json_carries_changes_and_ansible_diff(seed_root, cli):
    doc = json.loads(cli("plan", "--root", seed_root, "--json").stdout)
    assert set(doc) >= {"format_version", "command", "profile", "root", "changed", "failed", "msg",
                        "changes", "diff", "generation", "verify"}
    dropin = next(c for c in doc["changes"] if c["kind"] == "dropin")
    assert dropin["action"] == "create" and dropin["reason"]
    assert any(d["after_header"].startswith("/" + DROPIN) and "[Service]" in d["after"] for d in doc["diff"])


def test_conflict_exits_5_and_writes_nothing(seed_root, cli, snapshot):
    open(os.path.join(seed_root, "opt/vgpu/lib/libcuda.so.1"), "w").close()
    before = snapshot(seed_root)
    result = cli("apply", "--root", seed_root, "--no-verify")
    assert result.returncode == 5 and "use --force" in result.stderr
    assert snapshot(seed_root) == before


def test_held_lock_exits_8_naming_the_holder(seed_root, cli):
    from fixer.apply.lock import RunLock

    journal = Journal(seed_root)
    journal.ensure()
    with RunLock(journal.lock_path):
        result = cli("apply", "--root", seed_root, "--no-verify")
    assert result.returncode == 8
    assert f"pid {os.getpid()}" in result.stderr


def test_history_lists_generations(seed_root, cli):
    cli("apply", "--root", seed_root, "--no-verify")
    doc = json.loads(cli("history", "--root", seed_root, "--json").stdout)
    row = doc["generations"][0]
    assert (row["generation"], row["status"], row["profile"]) == (1, "applied", "h100-vgpu")
    assert row["changes"] == 9


def test_demo_runs_end_to_end(cli):
    result = cli("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "byte-for-byte as before" in result.stdout
    assert "Ollama 0.32.15, llama-server generation (from the binary)" in result.stdout  # as people run it today
    assert result.stdout.rstrip().splitlines()[-1].startswith("Next on a real host: `sudo vgpu-fix fix`")
    assert "  profile = h100-vgpu\n      from [interposes] /opt/vgpu/lib/libvgpu-cuda.so defines libc's dlopen" in result.stdout
    # fix chooses what `apply --profile h100-vgpu` (nvml_link: auto) does on this v0.32 host: the same changes
    first = re.search(r"applied generation 1: (\d+) change\(s\)", result.stdout)
    assert first and f"applied generation 2: {first.group(1)} change(s) with profile h100-vgpu" in result.stdout


def test_root_must_exist(cli, tmp_path):
    result = cli("plan", "--root", str(tmp_path / "missing"))
    assert result.returncode == 3 and "not a directory" in result.stderr


def test_copy_of_root_is_independent(seed_root, tmp_path):
    other = str(tmp_path / "other")
    shutil.copytree(seed_root, other, symlinks=True)
    applier.apply(load(seed_root), seed_root)
    assert core.make_plan(load(other), other).pending


def test_apply_dry_run_is_plan(seed_root, cli, snapshot):
    before = snapshot(seed_root, exclude=())
    dry = cli("apply", "--root", seed_root, "--dry-run", "--json")
    planned = cli("plan", "--root", seed_root, "--json")
    assert dry.returncode == planned.returncode == 4
    assert json.loads(dry.stdout) == json.loads(planned.stdout)
    assert snapshot(seed_root, exclude=()) == before
