"""doctor end to end: host trees in tmp dirs, the gatherer, the verdict and its outputs."""

from __future__ import annotations

import json
import subprocess

import pytest

from fixer.doctor import verdict as doctor
from fixer.doctor.rules.base import Finding, Fix
from fixer.doctor.snapshot import HostFacts, exec_argv, gather
from fixer.errors import InvalidInput
from fixer.render import doctor_text
from tests.conftest import seed_file
from tests.doctor.conftest import LOGS, read_log


def ids(diagnosis) -> list[str]:
    return [f.id for f in diagnosis.findings]


def test_seed_situation(seed_tree):
    """The seed's host and log: the backend never loaded because LD_PRELOAD put a dlopen wrapper in front."""
    d = doctor.diagnose(str(seed_tree.root), read_log("seed_current.log"))
    assert d.findings[0].id == "backend-never-loaded"
    assert "interposes dlopen" in d.verdict and d.verdict.startswith("CPU fallback")
    assert d.suggested_profile == "h100-vgpu" and "run `vgpu-fix plan --profile h100-vgpu`" in d.verdict
    found = set(ids(d))
    assert {"preload-interposes-dlopen", "noop-num-gpu", "toplevel-ggml-cuda", "driver-prefers-cuda-v13"} <= found
    # The seed's hypothesis (OLLAMA_LLM_LIBRARY bypasses NVML discovery) is not what doctor reports.
    assert "llm-library-invalid" not in found and "no-gpu-library-tried" not in found
    assert "NVML" not in d.verdict
    assert not any("NVML" in f.summary for f in d.findings)
    assert "Not the cause: OLLAMA_LLM_LIBRARY=cuda_v12" in d.findings[0].explanation
    assert all("install the nvidia driver" not in f.fix.text.lower() for f in d.findings)


def test_seed_situation_from_the_whole_seed_document(seed_tree):
    d = doctor.diagnose(str(seed_tree.root), open(seed_file("000_303130775b8e87ec.txt")).read())
    assert d.findings[0].id == "backend-never-loaded" and "interposes dlopen" in d.verdict


def _fixed_host(tree, elf_libs) -> None:
    tree.unit()
    tree.dropin("zz-vgpu-fix.conf", "[Service]\nEnvironment=\"OLLAMA_LLM_LIBRARY=cuda_v12\"\n"
                "Environment=\"LD_LIBRARY_PATH=/opt/vgpu/lib:/usr/local/lib/ollama/cuda_v12:/usr/local/lib/ollama\"\n"
                "LimitMEMLOCK=infinity\nAmbientCapabilities=CAP_SYS_ADMIN\nNoNewPrivileges=no\nPrivateDevices=no\n"
                "ProtectKernelTunables=no\n")
    tree.ollama()
    tree.copy("/opt/vgpu/lib/libvgpu-cuda.so", elf_libs["driver_plain"])
    tree.link("/opt/vgpu/lib/libcuda.so.1", "libvgpu-cuda.so")


def test_fixed_host_with_gpu_log(tree, elf_libs):
    _fixed_host(tree, elf_libs)
    d = doctor.diagnose(str(tree.root), read_log("gpu_ok_journal.txt"))
    assert [f.severity for f in d.findings] == ["info"]  # keep the cuda_v12 pin
    assert d.verdict.startswith("GPU in use: NVIDIA H100") and d.suggested_profile is None and d.ok


def test_missing_device_is_outside_reach(seed_tree):
    (seed_tree.root / "sys/bus/pci/devices/0000:00:02.0").mkdir(parents=True)
    seed_tree.write("/sys/bus/pci/devices/0000:00:02.0/vendor", "0x1234\n")
    seed_tree.write("/sys/bus/pci/devices/0000:00:02.0/class", "0x030000\n")
    d = doctor.diagnose(str(seed_tree.root), read_log("seed_current.log"))
    assert d.findings[0].id == "no-gpu-visible"
    assert d.verdict.startswith("Outside this host's reach") and d.suggested_profile is None and not d.ok


def test_gather_reads_the_seed_tree(seed_tree):
    facts = gather(str(seed_tree.root))
    assert facts.env["OLLAMA_LLM_LIBRARY"] == "cuda_v12" and facts.env_origin["OLLAMA_NUM_GPU"].endswith("override.conf")
    assert facts.preload == ["/opt/vgpu/lib/libvgpu-cuda.so", "/opt/vgpu/lib/libvgpu-cudart.so"]
    assert facts.ggml_dirs() == ["cuda_v12", "cuda_v13"]
    assert facts.lib_top["libggml-cuda.so"].target == "cuda_v12/libggml-cuda.so"
    assert facts.elf_of("/opt/vgpu/lib/libvgpu-cuda.so").interposes == ["dlopen"]  # fixer.facts.elf's facts
    # How ld.so resolves the runner comes from fixer.facts.linker: both shims are preloaded by SONAME.
    assert facts.runner.lookups["libcuda.so.1"].origin == "preload"
    assert facts.runner.lookups["libcudart.so.12"].path == "/opt/vgpu/lib/libvgpu-cudart.so"
    assert facts.exec_start == "/usr/local/bin/ollama serve" and facts.user == "ollama"
    assert facts.shim_host and facts.pci_gpus is None


@pytest.mark.parametrize("exec_start, argv", [
    ("/usr/local/bin/ollama serve", ["/usr/local/bin/ollama", "serve"]),
    ('-/usr/bin/env "A=b c" /usr/local/bin/ollama serve', ["/usr/bin/env", "A=b c", "/usr/local/bin/ollama", "serve"]),
    ("/bin/sh -c 'echo $$HOME; exec ollama serve'", ["/bin/sh", "-c", "echo $HOME; exec ollama serve"]),
    ('/usr/bin/ollama "serve\\s" x\\ty', ["/usr/bin/ollama", "serve ", "x\ty"]),  # systemd's C escapes
    ("/usr/bin/ollama 100%% serve", ["/usr/bin/ollama", "100%", "serve"]),
])
def test_exec_start_is_split_the_way_systemd_splits_it(exec_start, argv):
    """doctor reads ExecStart= with the facts layer's systemd word splitter, not a shell's (shlex)."""
    assert exec_argv(exec_start) == argv


def test_gather_lists_pci_display_controllers_through_the_facts_reader(tree):
    base = tree.root / "sys/bus/pci/devices"
    for address, cls in (("0000:00:02.0", "0x030000"), ("0000:00:03.0", "0x020000"), ("not-an-address", "0x030000")):
        (base / address).mkdir(parents=True)
        tree.write(f"/sys/bus/pci/devices/{address}/vendor", "0x10DE\n")
        tree.write(f"/sys/bus/pci/devices/{address}/class", f"{cls}\n")
    assert gather(str(tree.root)).pci_gpus == ["0000:00:02.0 0x10de:0x030000"]


def test_gather_ld_so_preload_dropin_without_service_and_snap(tree):
    tree.unit()
    tree.dropin("10-env.conf", "Environment=OLLAMA_LLM_LIBRARY=cuda\n")
    tree.write("/etc/ld.so.preload", "# comment\n/opt/vgpu/lib/libvgpu-cuda.so /gone.so\n")
    tree.write("/opt/vgpu/lib/libvgpu-cuda.so", "not an ELF")
    (tree.root / "snap/ollama").mkdir(parents=True)
    d = doctor.diagnose(str(tree.root), None)
    assert {"dropin-without-service", "ld-so-preload-shim", "ld-so-preload-missing", "snap-ollama"} <= set(ids(d))
    assert "llm-library-invalid" not in ids(d)  # the ignored drop-in's value never took effect


def test_shadowed_by_override_and_wrapper(tree):
    tree.unit()
    tree.ollama()
    tree.dropin("zz-vgpu-fix.conf", "[Service]\nEnvironment=OLLAMA_LLM_LIBRARY=cuda_v12\n")
    tree.dropin("zzz-local.conf", "[Service]\nEnvironment=OLLAMA_LLM_LIBRARY=cuda\nExecStart=\nExecStart=/usr/local/bin/run-ollama.sh\n")
    d = doctor.diagnose(str(tree.root), None)
    assert {"env-shadowed", "exec-start-wrapper", "llm-library-invalid"} <= set(ids(d))
    assert d.verdict.startswith("Problem: ")


def test_profile_changes_our_dropin_name(tree):
    tree.unit()
    tree.dropin("50-mine.conf", "[Service]\nEnvironment=OLLAMA_LLM_LIBRARY=cuda_v12\n")
    tree.dropin("override.conf", "[Service]\nEnvironment=OLLAMA_LLM_LIBRARY=cuda_v13\n")
    from fixer.model.profile import Profile

    profile = Profile.model_validate({"name": "mine", "service": {"dropin": "50-mine.conf"}})
    d = doctor.diagnose(str(tree.root), None, profile)
    assert "env-shadowed" in ids(d)
    assert "env-shadowed" not in ids(doctor.diagnose(str(tree.root), None))


def _f(fid: str, severity: str = "error", setting: str | None = "preload") -> Finding:
    return Finding(fid, severity, fid, (), "", Fix("x", setting))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "findings, host, available, expected",
    [
        ([_f("backend-never-loaded")], HostFacts(env={"LD_LIBRARY_PATH": "/opt/vgpu/lib"}, listings={"/opt/vgpu/lib": {"libvgpu-cuda.so": None}}), None, "h100-vgpu"),
        ([_f("toplevel-ggml-cuda", "warning", "symlinks")], HostFacts(), None, "passthrough-gpu"),
        ([_f("no-gpu-visible", "external", None), _f("noop-num-gpu", "warning", "service.unset")], None, None, None),
        ([_f("shim-missing-exports", "error", None)], None, None, None),
        ([_f("noop-num-gpu", "info", "service.unset")], None, None, None),
        ([_f("backend-never-loaded")], None, {"passthrough-gpu"}, None),
    ],
)
def test_suggest_profile(findings, host, available, expected):
    assert doctor.suggest_profile(findings, host, available) == expected


def test_verdict_mentions_what_the_profile_cannot_fix():
    text = doctor.verdict([_f("backend-never-loaded"), _f("shim-missing-exports", "error", None)], None, "h100-vgpu")
    assert "run `vgpu-fix plan --profile h100-vgpu`" in text and "it cannot fix: shim-missing-exports" in text


def test_outputs(seed_tree):
    d = doctor.diagnose(str(seed_tree.root), read_log("seed_current.log"))
    data = json.loads(json.dumps(d.to_dict()))
    assert data["format_version"] == 1 and data["command"] == "doctor" and data["failed"] is True
    assert data["findings"][0]["fix"]["setting"] == "preload"
    assert data["events"]["version"]["ranges"] == [["0.13.2", "0.22.1"]]
    text = doctor_text(d)
    assert "[ERROR] backend-never-loaded" in text and text.rstrip().splitlines()[-1] == "verdict: " + d.verdict
    assert "profile setting: symlinks" in text


def test_no_log_and_empty_root(tmp_path):
    d = doctor.diagnose(str(tmp_path), None)
    assert d.findings == [] and "--log" in d.verdict and "none given" in doctor_text(d)


def test_journal_refuses_a_foreign_root(tmp_path):
    with pytest.raises(InvalidInput):
        doctor.journal_text(str(tmp_path))


def test_doctor_exits_10_on_a_problem_and_0_without(tree, elf_libs, seed_tree, cli):
    seed = cli("doctor", "--root", str(seed_tree.root), "--log", str(LOGS / "seed_current.log"), "--json")
    assert seed.returncode == 10
    doc = json.loads(seed.stdout)
    assert {k: doc[k] for k in ("command", "changed", "failed", "exit_code")} == {
        "command": "doctor", "changed": False, "failed": True, "exit_code": 10}
    assert doc["msg"] == doc["verdict"] and doc["format_version"] == 1 and "root" in doc and "profile" in doc


def test_doctor_exits_0_when_nothing_is_wrong(tree, elf_libs, cli):
    _fixed_host(tree, elf_libs)
    ok = cli("doctor", "--root", str(tree.root), "--log", str(LOGS / "gpu_ok_journal.txt"))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_device_as_the_log_is_refused_before_it_is_read(tmp_path, cli):
    import time

    start = time.monotonic()
    endless = cli("doctor", "--root", str(tmp_path), "--log", "/dev/zero", "--json", timeout=30)
    assert endless.returncode == 3 and time.monotonic() - start < 20
    assert json.loads(endless.stdout)["msg"] == ("--log /dev/zero: is a character device, not a regular file or a "
                                                 "pipe; vgpu-fix does not read it")


def test_a_pipe_as_the_log_is_read_up_to_the_cap(tmp_path, cli):
    endless = subprocess.Popen(["sh", "-c", "exec cat /dev/zero"], stdout=subprocess.PIPE)
    try:
        result = cli("doctor", "--root", str(tmp_path), "--log", f"/proc/{endless.pid}/fd/1", "--json", timeout=60)
    finally:
        endless.kill()
        endless.wait()
    assert result.returncode == 3
    assert json.loads(result.stdout)["msg"].endswith("larger than 16777216 bytes; vgpu-fix reads files up to 16 MiB only")


def test_a_large_log_file_is_read_from_its_newest_end(tmp_path, seed_tree, cli):
    big = tmp_path / "big.log"
    with open(big, "wb") as fh:
        fh.write(b"x" * (17 * 1024 * 1024) + b"\n")
        fh.write((LOGS / "seed_current.log").read_bytes())
    d = cli("doctor", "--root", str(seed_tree.root), "--log", str(big), "--json")
    assert d.returncode == 10 and json.loads(d.stdout)["findings"][0]["id"] == "backend-never-loaded"
