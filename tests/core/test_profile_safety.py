"""Issue 12: profiles that are safe on every host they may meet. Each item: the harm today's profile
(tests/core/data/*-before.yaml, the shipped profiles before this change) does on a host tree where it
hurts, then the fix. The matrix at the end runs every shipped profile on every host kind."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fixer import plan as planner
from fixer import profiles, system
from fixer.apply import transaction as applier
from fixer.doctor import verdict as doctor
from fixer.errors import ProfileError
from fixer.facts import host
from fixer.facts.nvidia import chosen_library
from fixer.ollama.logs import summarize
from fixer.verify.layers import cache_additions, preload_replacements, verify
from tests import hosts

DATA = Path(__file__).parent / "data"
BEFORE = str(DATA / "h100-vgpu-before.yaml")
PRELOAD_BEFORE = str(DATA / "h100-vgpu-preload-before.yaml")
SHIPPED = [name for name, origin, _ in profiles.list_profiles("/nonexistent") if origin == "shipped"]


def make_plan(root: str, name: str = "h100-vgpu", force: bool = False, **sets: str) -> planner.Plan:
    prof = profiles.load(name, root, sets)
    return planner.build(prof, host.probe(root, prof), force=force)


def by_path(plan: planner.Plan) -> dict:
    return {c.path: c for c in plan.changes}


def dropin_text(plan: planner.Plan) -> str:
    return next(c.after.text() for c in plan.changes if c.kind == "dropin")


def gcc_lib(path: str, soname: str) -> None:
    src = path + ".c"
    with open(src, "w") as fh:
        fh.write("int vgpu_fix_test_symbol(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", path, src], check=True)
    os.unlink(src)


# ---------------------------------------------------------------- 1. the nvidia blacklist

@pytest.mark.parametrize("kind", ["grid-guest", "real-gpu"])
def test_1_harm_the_old_profile_blacklists_a_real_driver_silently(seed_root, kind):
    for step in hosts.HOST_KINDS[kind]:
        step(seed_root)
    plan = make_plan(seed_root, BEFORE)
    assert not plan.conflicts
    assert by_path(plan)["/etc/modprobe.d/vgpu-fix-blacklist-nvidia.conf"].action == "create"


@pytest.mark.parametrize("kind, reason", [
    ("grid-guest", "an NVIDIA kernel driver is bound to 0000:3b:00.0 (driver nvidia)"),
    ("real-gpu", "/usr/lib/x86_64-linux-gnu/libcuda.so.580.65.06 comes from an NVIDIA driver package"),
])
def test_1_fix_shim_profiles_refuse_a_host_with_a_real_driver(seed_root, kind, reason):
    for step in hosts.HOST_KINDS[kind]:
        step(seed_root)
    plan = make_plan(seed_root)
    assert any(c.startswith("requires.nvidia_driver: ") and reason in c for c in plan.conflicts), plan.conflicts
    forced = make_plan(seed_root, force=True)
    assert not forced.conflicts and "requires.nvidia_driver" in forced.forced
    assert any(reason in w and "--force" in w for w in forced.warnings)


def test_1_fix_no_profile_writes_a_blacklist(seed_root):
    hosts.shim_guest(seed_root)
    for name in SHIPPED:
        assert not any(c.path.startswith("/etc/modprobe.d/") and c.action in ("create", "update")
                       for c in make_plan(seed_root, name, force=True).changes), name


def test_1_doctor_reports_a_bound_driver_beside_shims(seed_root):
    hosts.grid_guest(seed_root)
    found = {f.id: f for f in doctor.diagnose(seed_root, None).findings}
    assert found["nvidia-driver-with-shims"].severity == "error"
    assert "/sys/bus/pci/drivers/nvidia/0000:3b:00.0: bound" in found["nvidia-driver-with-shims"].evidence


# ---------------------------------------------------------------- 2. the udev rule

def test_2_harm_the_old_rule_matches_any_nvidia_3d_controller_and_nothing_triggers_it(seed_root):
    hosts.shim_guest(seed_root)
    plan = make_plan(seed_root, BEFORE)
    rule = by_path(plan)["/etc/udev/rules.d/70-vgpu-fix.rules"].after.text()
    assert 'ATTR{class}=="0x030200"' in rule and "ATTR{device}" not in rule  # a real H100 matches too
    assert not any(a.startswith("udev-trigger") for a in plan.post_actions)  # verify runs without it


def test_2_fix_the_rule_matches_vendor_and_device_and_exactly_those_devices_are_triggered(seed_root):
    shim = hosts.pci_device(seed_root, *hosts.SHIM_DEVICE)
    hosts.pci_device(seed_root, "0000:00:06.0", "0x10de", "0x2331", "0x030200")  # another NVIDIA device
    hosts.pci_device(seed_root, "0000:00:07.0", "0x8086", "0x2330", "0x030200")  # same id, other vendor
    plan = make_plan(seed_root)
    rule = by_path(plan)["/etc/udev/rules.d/70-vgpu-fix.rules"].after.text()
    assert 'ATTR{vendor}=="0x10de", ATTR{device}=="0x2330"' in rule
    assert [a for a in plan.post_actions if a.startswith("udev")] == ["udev-reload", f"udev-trigger {shim}"]
    assert plan.post_actions.index("udev-reload") < plan.post_actions.index("restart")


@pytest.mark.parametrize("setting", ['pci_vendor=0x10de", RUN+="/bin/sh -c id', "pci_device=0x2330\nRUN", "ollama_group=a b"])
def test_2_fix_values_that_would_reach_the_rule_are_refused_naming_set(setting):
    with pytest.raises(ProfileError) as caught:
        profiles.load("h100-vgpu", "/nonexistent", profiles.parse_overrides([setting]))
    assert caught.value.message.startswith(f"--set {setting.partition('=')[0]}: ") and not caught.value.details


def test_2_fix_udevadm_runs_without_a_shell_on_exact_syspaths():
    assert system.udevadm_argv("reload") == ["control", "--reload"]
    assert system.udevadm_argv("trigger", ["/sys/devices/pci0000:00/0000:00:05.0"]) == [
        "trigger", "--action=change", "--settle", "/sys/devices/pci0000:00/0000:00:05.0"]
    with pytest.raises(Exception):
        system.udevadm_argv("trigger", ["--subsystem-match=pci"])  # never a match-everything trigger


def test_2_fix_apply_off_the_live_root_says_why_udev_was_not_run(seed_root):
    hosts.shim_guest(seed_root)
    outcome = applier.apply(profiles.load("h100-vgpu", seed_root), seed_root)
    assert "udev-reload: skipped (no running udev for this root)" in outcome.post_actions


# ---------------------------------------------------------------- 3. ld.so.conf publishes the shim dir

@pytest.fixture
def vendor_shim_dir(seed_root):
    """The shim directory of a vendor that also ships cuBLAS/cudart copies, as real ELF libraries."""
    lib = os.path.join(seed_root, "opt/vgpu/lib")
    for name, soname in (("libvgpu-cuda.so", "libcuda.so.1"), ("libvgpu-nvml.so", "libnvidia-ml.so.1"),
                         ("libcudart.so.12", "libcudart.so.12"), ("libcublas.so.12", "libcublas.so.12")):
        gcc_lib(os.path.join(lib, name), soname)
    return seed_root


def _cache_sonames(root: str, directory: str) -> set[str]:
    listing = subprocess.run(["ldconfig", "-p", "-C", os.path.join(root, "etc/ld.so.cache")],
                             capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if f"=> {directory}/" in line}


@pytest.mark.skipif(shutil.which("ldconfig") is None or shutil.which("gcc") is None, reason="needs ldconfig and gcc")
def test_3_harm_the_old_entry_puts_the_vendors_cudart_and_cublas_in_every_programs_cache(vendor_shim_dir):
    root = vendor_shim_dir
    prof = profiles.load(BEFORE, root)
    applier.apply(prof.model_copy(update={"files": [f for f in prof.files if "libcu" not in f.path]}), root)
    assert {"libcudart.so.12", "libcublas.so.12"} <= _cache_sonames(root, "/opt/vgpu/lib")


@pytest.mark.skipif(shutil.which("ldconfig") is None or shutil.which("gcc") is None, reason="needs ldconfig and gcc")
def test_3_fix_only_the_host_wide_links_reach_the_cache_and_verify_lists_them(vendor_shim_dir):
    root = vendor_shim_dir
    prof = profiles.load("h100-vgpu", root)
    applier.apply(prof, root)
    assert _cache_sonames(root, "/opt/vgpu/lib") == set()
    assert _cache_sonames(root, "/usr/local/lib/vgpu-fix") == {"libcuda.so.1", "libnvidia-ml.so.1"}
    assert cache_additions(root, prof) == [
        "ld.so cache entries from /etc/ld.so.conf.d/vgpu-fix.conf: "
        "libcuda.so.1 => /usr/local/lib/vgpu-fix/libcuda.so.1, libnvidia-ml.so.1 => /usr/local/lib/vgpu-fix/libnvidia-ml.so.1"]
    static = next(c for c in verify(root, prof, layers=("static",)).checks if c.name == "static")
    assert cache_additions(root, prof)[0] in static.evidence


# ---------------------------------------------------------------- 4. capabilities

def test_4_harm_the_old_dropin_narrows_a_root_units_bounding_set_and_plan_now_refuses_it(seed_root):
    hosts.root_unit(seed_root)
    text = planner.render_dropin(profiles.load(BEFORE, seed_root))
    assert "CapabilityBoundingSet=CAP_SYS_ADMIN CAP_IPC_LOCK" in text  # DAC_OVERRIDE, CHOWN, ... gone
    assert any("would narrow the bounding set of ollama.service, which runs as root" in c
               for c in make_plan(seed_root, BEFORE).conflicts)


def test_4_fix_no_bounding_set_and_ambient_capabilities_only_on_request(seed_root):
    assert "Capabilit" not in dropin_text(make_plan(seed_root))
    opted = dropin_text(make_plan(seed_root, shim_capabilities="CAP_SYS_ADMIN"))
    assert "AmbientCapabilities=CAP_SYS_ADMIN" in opted and "CapabilityBoundingSet" not in opted


def test_4_fix_a_profile_that_narrows_a_root_units_bounding_set_is_refused(seed_root, tmp_path):
    hosts.root_unit(seed_root)
    site = tmp_path / "narrow.yaml"
    site.write_text("name: narrow\nextends: h100-vgpu\nservice:\n  directives:\n    CapabilityBoundingSet: CAP_SYS_ADMIN\n")
    assert any("would narrow the bounding set" in c for c in make_plan(seed_root, str(site), force=True).conflicts)


def test_4_capability_values_are_typed():
    with pytest.raises(ProfileError, match=r"^--set shim_capabilities: "):
        profiles.load("h100-vgpu", "/nonexistent", {"shim_capabilities": "CAP_SYS_ADMIN\nExecStart=/bin/sh"})


# ---------------------------------------------------------------- 5. ReadWritePaths (see tests/reliability/test_readwritepaths.py)

def test_5_the_profile_no_longer_lists_the_directory_of_symlinks(seed_root):
    assert "ReadWritePaths=-/sys/bus/pci/devices/" in dropin_text(make_plan(seed_root, BEFORE))
    text = dropin_text(make_plan(seed_root))
    assert "ReadWritePaths" not in text and "ProtectKernelTunables=no" in text


# ---------------------------------------------------------------- 6. symlink targets

def _renamed_shim(root: str) -> None:
    """A host whose driver shim is libvgpu-cuda.so.1 (not the default name) with a working link."""
    lib = os.path.join(root, "opt/vgpu/lib")
    os.rename(os.path.join(lib, "libvgpu-cuda.so"), os.path.join(lib, "libvgpu-cuda.so.1"))
    os.symlink("libvgpu-cuda.so.1", os.path.join(lib, "libcuda.so.1"))


def test_6_harm_the_old_default_replaces_a_working_link_with_a_dangling_one(seed_root):
    _renamed_shim(seed_root)
    plan = make_plan(seed_root, BEFORE, force=True)  # what plan did without the target check
    change = by_path(plan)["/opt/vgpu/lib/libcuda.so.1"]
    assert change.action == "update" and change.after.target == "libvgpu-cuda.so"
    assert not os.path.exists(os.path.join(seed_root, "opt/vgpu/lib/libvgpu-cuda.so"))


def test_6_fix_a_link_to_a_missing_target_is_a_conflict_unless_forced(seed_root):
    _renamed_shim(seed_root)
    plan = make_plan(seed_root)
    assert any(c.startswith("/opt/vgpu/lib/libcuda.so.1: its target libvgpu-cuda.so does not exist") for c in plan.conflicts)
    assert "/opt/vgpu/lib/libcuda.so.1" not in by_path(plan)
    assert not make_plan(seed_root, cuda_shim="libvgpu-cuda.so.1").conflicts  # the right name converges
    forced = make_plan(seed_root, force=True)
    assert by_path(forced)["/opt/vgpu/lib/libcuda.so.1"].action == "update" and "/opt/vgpu/lib/libcuda.so.1" in forced.forced


def test_6_the_default_shim_names_are_the_seeds():
    checkout = Path(__file__).resolve().parents[2]
    seed = next((d / "shared" / "seed" for d in (checkout.parent, checkout.parent.parent)
                 if (d / "shared" / "seed").is_dir()), None)
    if seed is None:
        pytest.skip("the seed is not beside this checkout")
    text = "\n".join(p.read_text(errors="replace") for p in seed.iterdir() if p.is_file())
    prof = profiles.load("h100-vgpu", "/nonexistent")
    assert prof.vars["cuda_shim"].value in text and prof.vars["cudart_shim"].value in text


# ---------------------------------------------------------------- 7. the vendor's cudart

def test_7_harm_the_old_profile_deletes_the_vendors_runtime(seed_root):
    open(os.path.join(seed_root, "opt/vgpu/lib/libcudart.so.12"), "w").close()
    assert by_path(make_plan(seed_root, BEFORE))["/opt/vgpu/lib/libcudart.so.12"].action == "delete"


@pytest.mark.parametrize("name", ["h100-vgpu", "h100-vgpu-cuda13"])
def test_7_fix_the_vendors_cudart_and_cublas_stay(seed_root, name):
    """Ollama never loads the shim directory's copies (its runners search lib/ollama and the variant folder
    first; v0.30+ backends carry $ORIGIN, v0.32.15 llama/server/CMakeLists.txt:24-25): nothing deletes them."""
    lib = os.path.join(seed_root, "opt/vgpu/lib")
    names = ("libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12", "libcublas.so.13", "libcublasLt.so.13")
    for f in names:
        open(os.path.join(lib, f), "w").close()
    changes = by_path(make_plan(seed_root, name))
    assert not any(f"/opt/vgpu/lib/{f}" in changes for f in names)


# ---------------------------------------------------------------- 8. h100-vgpu-preload

def test_8_harm_the_old_preload_profile_replaces_ollamas_runtime():
    assert "/opt/vgpu/lib/libvgpu-cudart.so" in profiles.load(PRELOAD_BEFORE, "/nonexistent").preload


def test_8_fix_only_the_driver_shim_is_preloaded_and_verify_names_what_it_replaces():
    assert profiles.load("h100-vgpu-preload", "/nonexistent").preload == ["/opt/vgpu/lib/libvgpu-cuda.so"]
    details = {"objects": [{"group": "preload", "path": "/opt/vgpu/lib/libvgpu-cuda.so", "soname": "libcuda.so.1"},
                           {"group": "backend", "path": "/x/libcudart.so.12", "soname": "libcudart.so.12"}]}
    assert preload_replacements(details) == [
        "preload /opt/vgpu/lib/libvgpu-cuda.so (SONAME libcuda.so.1) replaces every other libcuda.so.1 for the "
        "runner, Ollama's bundled copy included"]


def test_8_fix_doctor_never_suggests_the_preload_profile(seed_root):
    from fixer.doctor.rules.base import Finding, Fix
    from fixer.doctor.snapshot import gather

    facts = gather(seed_root)  # the seed preloads its shims in override.conf
    assert facts.preload
    assert doctor.suggest_profile([Finding("x", "error", "x", (), "", Fix("x", "preload"))], facts) == "h100-vgpu"


# ---------------------------------------------------------------- 9. h100-vgpu-cuda13

LOG = ('time=2026-02-25T09:16:58.102-05:00 level=INFO source=types.go:42 msg="inference compute" id=GPU-a0 '
       'library=CUDA compute=9.0 name=CUDA0 description="NVIDIA H100 80GB HBM3" libdirs=ollama,{lib} driver={driver} '
       'pci_id=0:0 type=discrete total="79.6 GiB" available="79.1 GiB"\n')


@pytest.mark.parametrize("driver, expected", [("12.9", "h100-vgpu"), ("13.0", "h100-vgpu-cuda13")])
def test_9_cuda13_is_chosen_from_the_reported_driver_not_from_the_pin(driver, expected):
    from fixer.doctor.rules.base import Finding, Fix
    from fixer.doctor.snapshot import HostFacts

    facts = HostFacts(env={"OLLAMA_LLM_LIBRARY": "cuda_v13"}, listings={"/opt/vgpu/lib": {"libvgpu-cuda.so": None}})
    log = summarize(LOG.format(lib="cuda_v13", driver=driver))
    found = [Finding("x", "error", "x", (), "", Fix("x", "files"))]
    assert doctor.suggest_profile(found, facts, log=log) == expected
    assert doctor.suggest_profile(found, facts) == "h100-vgpu"  # a pin alone never picks cuda13


# ---------------------------------------------------------------- 10. passthrough-gpu

@pytest.mark.parametrize("version, expected", [("580.65.06", "cuda_v13"), ("550.90.07", "cuda_v12")])
def test_10_passthrough_verifies_the_library_ollama_picks_for_the_driver(seed_root, version, expected):
    hosts.real_gpu(seed_root, version)
    assert chosen_library(seed_root, "/usr/local/lib/ollama") == expected
    report = verify(seed_root, profiles.load("passthrough-gpu", seed_root), layers=("environment",))
    assert report.backend == f"{expected}/libggml-cuda.so"
    assert f"library auto: Ollama picks {expected} (driver {version})" in report.checks[0].evidence


def test_10_harm_the_old_passthrough_leaves_the_shim_profiles_host_wide_files(seed_root):
    hosts.shim_guest(seed_root)
    applier.apply(profiles.load("h100-vgpu", seed_root), seed_root)
    hosts.real_gpu(seed_root)  # the host moved to a real GPU
    old = profiles.load(str(DATA / "passthrough-gpu-before.yaml"), seed_root)
    plan = planner.build(old, host.probe(seed_root, old))
    assert "/etc/udev/rules.d/70-vgpu-fix.rules" not in by_path(plan)
    assert os.path.exists(os.path.join(seed_root, "etc/ld.so.conf.d/vgpu-fix.conf"))


def test_10_fix_passthrough_removes_what_the_shim_profiles_installed(seed_root):
    hosts.shim_guest(seed_root)
    applier.apply(profiles.load("h100-vgpu", seed_root), seed_root)
    os.makedirs(os.path.join(seed_root, "etc/modprobe.d"))
    open(os.path.join(seed_root, "etc/modprobe.d/vgpu-fix-blacklist-nvidia.conf"), "w").close()  # an older version's
    hosts.real_gpu(seed_root)
    plan = make_plan(seed_root, "passthrough-gpu")
    assert not plan.conflicts
    deleted = {c.path for c in plan.pending if c.action == "delete"}
    assert {"/etc/udev/rules.d/70-vgpu-fix.rules", "/etc/ld.so.conf.d/vgpu-fix.conf",
            "/etc/modprobe.d/vgpu-fix-blacklist-nvidia.conf", "/usr/local/lib/vgpu-fix/libcuda.so.1",
            "/usr/local/lib/vgpu-fix/libnvidia-ml.so.1"} <= deleted
    assert plan.post_actions[:2] == ["ldconfig", "udev-reload"]


# ---------------------------------------------------------------- 11. settings the evidence names

@pytest.mark.parametrize("line, var", [
    ('Environment="OLLAMA_FLASH_ATTENTION=false"', "flash_attention"),
    ('Environment="OLLAMA_CONTEXT_LENGTH=8192"', "context_length"),
    ('Environment="GGML_CUDA_DISABLE_GRAPHS=1"', "disable_cuda_graphs"),
    ('Environment="OLLAMA_LOAD_TIMEOUT=15m"', "load_timeout"),
])
def test_11_each_setting_has_a_variable_with_its_reason(seed_root, line, var):
    plan = make_plan(seed_root)
    assert line in dropin_text(plan).splitlines()
    assert profiles.load("h100-vgpu", seed_root).vars[var].description


def test_11_graphs_are_left_out_entirely_when_disabled_is_empty(seed_root):
    # ggml disables graphs when GGML_CUDA_DISABLE_GRAPHS is set at all, so "enabled" must omit it.
    assert "GGML_CUDA_DISABLE_GRAPHS" not in dropin_text(make_plan(seed_root, disable_cuda_graphs=""))


@pytest.mark.parametrize("setting", ["context_length=huge", "context_length=100", "flash_attention=maybe",
                                     "load_timeout=15 minutes", "cuda_major=11"])
def test_11_values_are_checked_against_their_type(setting):
    with pytest.raises(ProfileError, match=rf"^--set {setting.partition('=')[0]}: "):
        profiles.load("h100-vgpu", "/nonexistent", profiles.parse_overrides([setting]))


# ---------------------------------------------------------------- 12. what a profile cannot fix

@pytest.mark.parametrize("name", SHIPPED)
def test_12_every_profile_says_what_it_cannot_fix(name):
    prof = profiles.load(name, "/nonexistent")
    assert "cannot fix" in prof.description and prof.cannot_fix


def test_12_doctor_reports_what_the_suggested_profile_cannot_fix(seed_root):
    d = doctor.diagnose(seed_root, None)
    limits = next(f for f in d.findings if f.id == "profile-cannot-fix")
    assert d.suggested_profile == "h100-vgpu" and any("patched Ollama" in e for e in limits.evidence)
    assert not limits.fixable


def test_12_readme_says_what_profiles_cannot_fix():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "cannot fix" in readme and "patched Ollama" in readme


# ---------------------------------------------------------------- the matrix

# Which (profile, host kind) pairs must be refused, and the reason they name.
REFUSED = {"h100-vgpu": ("grid-guest", "real-gpu", "real-gpu-v032")}
REFUSED.update({n: REFUSED["h100-vgpu"] for n in ("h100-vgpu-preload", "h100-vgpu-cuda13")})
REFUSED["passthrough-gpu"] = ("shim-guest", "shim-guest-root-unit", "shim-guest-v032")


@pytest.mark.parametrize("kind", sorted(hosts.HOST_KINDS))
@pytest.mark.parametrize("name", SHIPPED)
def test_matrix_every_profile_on_every_host_kind_converges_safely_or_refuses(seed_root, name, kind):
    for step in hosts.HOST_KINDS[kind]:
        step(seed_root)
    plan = make_plan(seed_root, name)
    if kind in REFUSED[name]:
        assert any(c.startswith("requires.nvidia_driver: ") for c in plan.conflicts), plan.conflicts
        with pytest.raises(Exception, match="conflict"):
            applier.apply(profiles.load(name, seed_root), seed_root)
        return
    assert plan.conflicts == []
    for change in plan.pending:
        assert not change.path.startswith("/etc/modprobe.d/") or change.action == "delete"
        assert not change.path.startswith("/var/lib/vgpu-fix")
        if change.after.kind == "symlink":
            target = os.path.join(os.path.dirname(change.path), change.after.target)
            assert os.path.exists(os.path.join(seed_root, target.lstrip("/"))), change.path
        if change.kind == "dropin":
            assert "CapabilityBoundingSet" not in change.after.text()
            assert "AmbientCapabilities" not in change.after.text()  # opt-in only
        if change.kind == "udev":
            assert 'ATTR{device}=="0x2330"' in change.after.text()
        if change.action == "delete":  # nothing of Ollama's v0.32 tree but the stray top-level backend
            assert not change.path.startswith("/usr/local/lib/ollama/") or change.path.endswith("/libggml-cuda.so")
    outcome = applier.apply(profiles.load(name, seed_root), seed_root)
    assert outcome.changed and make_plan(seed_root, name).converged  # converges in one apply
