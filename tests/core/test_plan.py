"""The planner: a pure diff of profile and host, with a reason for every change and no-op."""

from __future__ import annotations

import os

import pytest

from fixer import plan as planner
from fixer import profiles
from fixer.facts import host


def make_plan(root: str, name: str = "h100-vgpu", force: bool = False, **overrides):
    prof = profiles.load(name, root, overrides)
    return planner.build(prof, host.probe(root, prof), force=force)


def by_path(plan):
    return {c.path: c for c in plan.changes}


def test_seed_host_plan_fixes_what_the_seed_got_wrong(seed_root):
    changes = by_path(make_plan(seed_root))
    assert changes["/usr/local/lib/ollama/libggml-cuda.so"].action == "delete"
    assert changes["/opt/vgpu/lib/libcuda.so.1"].action == "create"
    assert changes["/etc/ld.so.preload"].action == "update"
    dropin = changes["/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf"]
    assert dropin.action == "create"
    assert "UnsetEnvironment=OLLAMA_NUM_GPU OLLAMA_LIBRARY_PATH LD_PRELOAD" in dropin.after.text()


def test_every_change_and_noop_has_a_reason(seed_root):
    udev = by_path(make_plan(seed_root))["/etc/udev/rules.d/70-vgpu-fix.rules"]
    os.makedirs(os.path.join(seed_root, "etc/udev/rules.d"), exist_ok=True)
    with open(os.path.join(seed_root, "etc/udev/rules.d/70-vgpu-fix.rules"), "wb") as fh:
        fh.write(udev.after.data)  # already as planned: a noop
    plan = make_plan(seed_root)
    assert all(c.reason for c in plan.changes)
    assert {c.action for c in plan.changes} >= {"create", "update", "delete", "noop"}


def test_plan_shows_which_hand_made_settings_it_supersedes(seed_root):
    notes = "\n".join(make_plan(seed_root).notes)
    assert "supersedes OLLAMA_NUM_GPU=999 from /etc/systemd/system/ollama.service.d/override.conf (now unset)" in notes
    assert "supersedes LD_PRELOAD=" in notes


def test_our_dropin_wins_over_override_conf(seed_root):
    plan = make_plan(seed_root)
    dropin = by_path(plan)["/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf"]
    predicted = host.with_dropin(host.probe_unit(seed_root, "ollama.service"), dropin.path, dropin.after.text())
    env = predicted.environment.effective()
    assert "LD_PRELOAD" not in env and "OLLAMA_NUM_GPU" not in env
    assert env["OLLAMA_LLM_LIBRARY"] == "cuda_v12"
    assert not plan.warnings


def test_a_later_dropin_that_shadows_us_is_reported(seed_root):
    path = os.path.join(seed_root, "etc/systemd/system/ollama.service.d/zzz-local.conf")
    with open(path, "w") as fh:
        fh.write('[Service]\nEnvironment="OLLAMA_LLM_LIBRARY=cuda"\n')
    warnings = "\n".join(make_plan(seed_root).warnings)
    assert "OLLAMA_LLM_LIBRARY is shadowed by /etc/systemd/system/ollama.service.d/zzz-local.conf" in warnings


def test_dropin_without_service_header_is_warned_about(seed_root):
    with open(os.path.join(seed_root, "etc/systemd/system/ollama.service.d/override.conf"), "w") as fh:
        fh.write('Environment="OLLAMA_LLM_LIBRARY=cuda_v12"\n')
    assert any("no [Service] header" in w for w in make_plan(seed_root).warnings)


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_wrong_path_type_is_a_conflict(seed_root, kind):
    real = os.path.join(seed_root, "opt/vgpu/lib/libcuda.so.1")
    if kind == "file":
        open(real, "w").close()
    else:
        os.mkdir(real)
    plan = make_plan(seed_root)
    assert any(c.startswith("/opt/vgpu/lib/libcuda.so.1: is a") for c in plan.conflicts)
    assert "/opt/vgpu/lib/libcuda.so.1" not in by_path(plan)


def test_force_turns_a_wrong_type_file_into_a_journaled_replacement(seed_root):
    open(os.path.join(seed_root, "opt/vgpu/lib/libcuda.so.1"), "w").close()
    plan = make_plan(seed_root, force=True)
    assert not plan.conflicts
    change = by_path(plan)["/opt/vgpu/lib/libcuda.so.1"]
    assert (change.action, change.before.kind, change.after.kind) == ("update", "file", "symlink")


def test_force_never_replaces_a_directory(seed_root):
    os.mkdir(os.path.join(seed_root, "opt/vgpu/lib/libcuda.so.1"))
    assert make_plan(seed_root, force=True).conflicts


def test_symlinked_parent_directory_is_a_conflict_even_with_force(seed_root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dropin_dir = os.path.join(seed_root, "etc/systemd/system/ollama.service.d")
    os.rename(dropin_dir, str(elsewhere / "d"))
    os.symlink(str(elsewhere / "d"), dropin_dir)
    plan = make_plan(seed_root, force=True)
    assert any("never writes through symlinks" in c or "not a directory" in c for c in plan.conflicts)


def test_ld_so_preload_keeps_other_entries(seed_root):
    with open(os.path.join(seed_root, "etc/ld.so.preload"), "w") as fh:
        fh.write("/usr/lib/libkeep.so\n/opt/vgpu/lib/libvgpu-cuda.so /usr/lib/libalso.so\n")
    change = by_path(make_plan(seed_root))["/etc/ld.so.preload"]
    assert change.after.text() == "/usr/lib/libkeep.so\n/usr/lib/libalso.so\n"


def test_mode_drift_alone_is_an_update(seed_root):
    make_root_converged(seed_root)
    os.chmod(os.path.join(seed_root, "etc/udev/rules.d/70-vgpu-fix.rules"), 0o600)
    change = by_path(make_plan(seed_root))["/etc/udev/rules.d/70-vgpu-fix.rules"]
    assert change.action == "update" and "mode 0600 must be 0644" in change.reason


def test_missing_ld_so_conf_is_created_with_the_standard_include(seed_root):
    os.unlink(os.path.join(seed_root, "etc/ld.so.conf"))
    change = by_path(make_plan(seed_root))["/etc/ld.so.conf"]
    assert change.after.text() == "include /etc/ld.so.conf.d/*.conf\n"


def test_post_actions_follow_from_the_changes(seed_root):
    assert make_plan(seed_root).post_actions == ["ldconfig", "udev-reload", "daemon-reload", "restart"]
    make_root_converged(seed_root)
    assert make_plan(seed_root).post_actions == []


def test_planning_writes_nothing(seed_root, snapshot):
    before = snapshot(seed_root, exclude=())
    make_plan(seed_root)
    assert snapshot(seed_root, exclude=()) == before


def make_root_converged(root: str) -> None:
    from fixer.apply import transaction as applier

    applier.apply(profiles.load("h100-vgpu", root), root)
