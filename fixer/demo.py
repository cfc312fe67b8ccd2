"""`vgpu-fix demo`: the seed's broken host on a v0.32 install in a temp dir: diagnosed, planned, applied,
re-planned, rolled back, then fixed by `vgpu-fix fix` from its own evidence."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from typing import Callable

SEED_UNIT = """[Unit]
Description=Ollama Service
After=network-online.target

[Service]
ExecStart=/usr/local/bin/ollama serve
User=ollama
Group=ollama
Restart=always
RestartSec=3
Environment="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

[Install]
WantedBy=default.target
"""

# What `systemctl edit ollama` left on the seed's host: the settings its investigation relied on.
SEED_OVERRIDE = """[Service]
Environment="OLLAMA_LLM_LIBRARY=cuda_v12"
Environment="OLLAMA_NUM_GPU=999"
Environment="LD_PRELOAD=/opt/vgpu/lib/libvgpu-cuda.so:/opt/vgpu/lib/libvgpu-cudart.so"
Environment="OLLAMA_DEBUG=1"
"""


# The seed's own log lines (Ollama's slog format, wrapped as the seed quoted them).
SEED_LOG = """\
time=2026-02-26T04:45:48.892-05:00 level=DEBUG source=runner.go:437
msg="bootstrap discovery took" duration=228.959725ms
OLLAMA_LIBRARY_PATH="[/usr/local/lib/ollama /usr/local/lib/ollama/cuda_v12]"
time=2026-02-26T04:45:48.892-05:00 level=DEBUG source=runner.go:124
msg="evaluating which, if any, devices to filter out" initial_count=0
time=2026-02-26T04:45:48.892-05:00 level=INFO source=types.go:60
msg="inference compute" id=cpu library=cpu
"""


# What the seed's service logs on a v0.32.15 install (discover/runner.go:60, types.go:50): the CPU.
DEMO_LOG = """\
time=2026-12-06T02:10:00.101Z level=INFO source=routes.go:2008 msg="Listening on 127.0.0.1:11434 (version 0.32.15)"
time=2026-12-06T02:10:00.102Z level=INFO source=runner.go:60 msg="discovering available GPUs..."
time=2026-12-06T02:10:01.910Z level=INFO source=types.go:50 msg="inference compute" id=cpu library=cpu compute="" \
name=cpu description=cpu libdirs=ollama driver="" pci_id="" type="" total="31.3 GiB" available="30.4 GiB"
"""
DEMO_VERSION = "0.32.15"
GUEST_DEVICE = ("0000:00:05.0", "0x10de", "0x2330", "0x030200")  # address, vendor, device, class


def _write(root: str, path: str, data: bytes | str, mode: int = 0o644) -> None:
    real = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(real), exist_ok=True)
    with open(real, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    os.chmod(real, mode)


def build_seed_host(root: str, libraries: dict[str, bytes] | None = None) -> None:
    """Lay out the seed's host under `root`; `libraries` maps paths to real ELF bytes if wanted."""
    ollama = "/usr/local/lib/ollama"
    placeholders = {
        f"{ollama}/libggml-base.so.0": b"",
        f"{ollama}/libggml-cpu-haswell.so": b"",
        f"{ollama}/cuda_v12/libggml-cuda.so": b"",
        f"{ollama}/cuda_v12/libcudart.so.12": b"",
        f"{ollama}/cuda_v12/libcublas.so.12": b"",
        f"{ollama}/cuda_v12/libcublasLt.so.12": b"",
        f"{ollama}/cuda_v13/libggml-cuda.so": b"",
        f"{ollama}/cuda_v13/libcudart.so.13": b"",
        "/opt/vgpu/lib/libvgpu-cuda.so": b"",
        "/opt/vgpu/lib/libvgpu-cudart.so": b"",
        "/opt/vgpu/lib/libvgpu-nvml.so": b"",
    }
    placeholders.update(libraries or {})
    for path, data in placeholders.items():
        _write(root, path, data or f"placeholder for {os.path.basename(path)}\n", 0o755)
    _seed_configuration(root, "#!/bin/sh\necho 'ollama stand-in'\n")


def _seed_configuration(root: str, ollama: bytes | str) -> None:
    """What the seed's operator left around Ollama: the binary, the hand-made top-level backend link, the
    unit and its override, ld.so.conf and the system-wide preload of the driver shim."""
    _write(root, "/usr/local/bin/ollama", ollama, 0o755)
    os.symlink("cuda_v12/libggml-cuda.so", os.path.join(root, "usr/local/lib/ollama/libggml-cuda.so"))
    _write(root, "/etc/systemd/system/ollama.service", SEED_UNIT)
    _write(root, "/etc/systemd/system/ollama.service.d/override.conf", SEED_OVERRIDE)
    _write(root, "/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n")
    _write(root, "/etc/ld.so.conf.d/libc.conf", "/usr/local/lib\n")
    _write(root, "/etc/ld.so.preload", "/opt/vgpu/lib/libvgpu-cuda.so\n")
    os.makedirs(os.path.join(root, "var/lib"), exist_ok=True)


def _demo_libraries() -> dict[str, bytes]:
    """Ollama v0.32's lib/ollama and the vendor's shims as ELF files with their real SONAMEs, NEEDED
    entries and entry points (fixer.demo_elf: no compiler needed). The driver shim also defines libc's
    dlopen and open, like the field's shim: the reason a preload breaks ggml's loader."""
    from fixer.demo_elf import shared_object

    lib, shim = "/usr/local/lib/ollama", "/opt/vgpu/lib"
    out: dict[str, bytes] = {f"{lib}/libggml-base.so.0": shared_object("libggml-base.so.0", ["ggml_backend_register"]),
                             f"{lib}/libggml-cpu-haswell.so": shared_object(None, ["ggml_backend_init"], ("libggml-base.so.0",))}
    for major, runtime in ((12, "12.8.90"), (13, "13.0.48")):
        folder = f"{lib}/cuda_v{major}"
        out[f"{folder}/libggml-cuda.so"] = shared_object(None, ["ggml_backend_init", "ggml_backend_score"], (
            "libggml-base.so.0", f"libcudart.so.{major}", f"libcublas.so.{major}", f"libcublasLt.so.{major}",
            "libcuda.so.1"))
        out[f"{folder}/libcudart.so.{runtime}"] = shared_object(f"libcudart.so.{major}", ["cudaGetDeviceCount"])
        out[f"{folder}/libcublas.so.{major}"] = shared_object(f"libcublas.so.{major}", ["cublasCreate_v2"])
        out[f"{folder}/libcublasLt.so.{major}"] = shared_object(f"libcublasLt.so.{major}", ["cublasLtCreate"])
    out[f"{shim}/libvgpu-cuda.so"] = shared_object("libcuda.so.1", [
        "cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "dlopen", "open"])
    out[f"{shim}/libvgpu-cudart.so"] = shared_object("libcudart.so.12", ["cudaGetDeviceCount", "cudaSetDevice"])
    out[f"{shim}/libvgpu-nvml.so"] = shared_object("libnvidia-ml.so.1", [
        "nvmlInit_v2", "nvmlShutdown", "nvmlSystemGetDriverVersion"])
    return out


def build_demo_host(root: str) -> None:
    """The seed's host as people run Ollama today (v0.32.15, install.sh's llama-server layout): the seed's
    unit, override and preload, the shims in /opt/vgpu/lib, and the para-virtual H100 on the PCI bus."""
    from fixer.demo_elf import program_with_version

    lib = "/usr/local/lib/ollama"
    for path, data in _demo_libraries().items():
        _write(root, path, data, 0o755)
    for name in ("llama-server", "libllama.so", "libggml.so", "libmtmd.so"):  # llama.cpp's, not read by fix
        _write(root, f"{lib}/{name}", f"placeholder for {name}\n", 0o755)
    for major, runtime in ((12, "12.8.90"), (13, "13.0.48")):
        os.symlink(f"libcudart.so.{runtime}", os.path.join(root, lib.lstrip("/"), f"cuda_v{major}", f"libcudart.so.{major}"))
    _seed_configuration(root, program_with_version(DEMO_VERSION))
    address, vendor, device, cls = GUEST_DEVICE
    syspath = f"/sys/devices/pci0000:00/{address}"
    for name, value in (("vendor", vendor), ("device", device), ("class", cls)):
        _write(root, f"{syspath}/{name}", value + "\n")
    os.makedirs(os.path.join(root, "sys/bus/pci/devices"))
    os.symlink(f"../../../devices/pci0000:00/{address}", os.path.join(root, "sys/bus/pci/devices", address))


def snapshot_tree(root: str, exclude: tuple[str, ...] = ("var/lib/vgpu-fix",)) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner and content hash or link target."""
    result: dict[str, tuple] = {}
    for directory, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel_dir, d)) not in exclude]
        for name in dirs + files:
            real = os.path.join(directory, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(real)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("symlink", os.readlink(real))
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            elif not stat.S_ISREG(st.st_mode):  # FIFO, socket, device: never opened (a FIFO would block)
                result[rel] = ("special", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            else:
                with open(real, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                result[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, digest)
    return result


def run_demo(keep: bool = False, echo: Callable[[str], None] = print) -> int:
    from fixer import core, profiles
    from fixer.doctor import verdict as doctor
    from fixer.render import Painter, fix_text, plan_text

    root = tempfile.mkdtemp(prefix="vgpu-fix-demo-")
    paint = Painter()
    try:
        build_demo_host(root)
        before = snapshot_tree(root)
        profile = profiles.load("h100-vgpu", root)
        echo(paint(f"== 1. The seed's broken host on Ollama {DEMO_VERSION}, in {root}: "
                   "vgpu-fix doctor --log <what its service logged>", "head"))
        diagnosis = doctor.diagnose(root, DEMO_LOG)
        echo(f"   {core.installation(root, profile).describe()}")
        echo(f"   verdict: {diagnosis.verdict}")
        for finding in diagnosis.findings:
            echo(f"   [{finding.severity}] {finding.id}: {finding.summary}")
        echo("")
        echo(paint("== 2. vgpu-fix plan --profile h100-vgpu", "head"))
        echo(plan_text(core.make_plan(profile, root), paint) + "\n")
        echo(paint("== 3. vgpu-fix apply --profile h100-vgpu --no-verify", "head"))
        outcome = core.apply(profile, root, verify=False)
        for line in outcome.messages + outcome.post_actions:
            echo("   " + line)
        echo(f"   applied generation {outcome.generation}: {len(outcome.plan.pending)} change(s)\n")
        echo(paint("== 4. vgpu-fix plan again: nothing left to do", "head"))
        second = core.make_plan(profile, root)
        echo(plan_text(second, paint, show_noops=False) + "\n")
        echo(paint("== 5. vgpu-fix rollback", "head"))
        back = core.rollback(root)
        echo(f"   restored {len(back.restored)} path(s)")
        same = snapshot_tree(root) == before
        echo(f"   host is {'byte-for-byte as before' if same else 'NOT as before'} (files, modes, link targets)\n")
        echo(paint("== 6. vgpu-fix fix --no-verify: the profile and its variables chosen from the host's own evidence",
                   "head"))
        found, decision = core.fix_choice(root, probe=False)
        echo(fix_text(found.to_dict(), decision.to_dict()))
        fixed = core.apply(core.fix_profile(root, decision), root, verify=False) if decision.profile else None
        if fixed is not None:
            echo(f"   applied generation {fixed.generation}: {len(fixed.plan.pending)} change(s) with profile "
                 f"{decision.profile}\n")
        echo("Next on a real host: `sudo vgpu-fix fix` shows the same evidence and choices, asks, applies, and "
             "keeps the change only when the restarted ollama.service reports the GPU (else it rolls back).")
        return 0 if same and not second.pending and fixed is not None and fixed.changed else 1
    finally:
        if keep:
            echo(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)
