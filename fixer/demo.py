"""`vgpu-fix demo`: the seed's broken host in a temp dir, planned, fixed, re-planned, rolled back."""

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
    _write(root, "/usr/local/bin/ollama", "#!/bin/sh\necho 'ollama stand-in'\n", 0o755)
    os.symlink("cuda_v12/libggml-cuda.so", os.path.join(root, ollama.lstrip("/"), "libggml-cuda.so"))
    _write(root, "/etc/systemd/system/ollama.service", SEED_UNIT)
    _write(root, "/etc/systemd/system/ollama.service.d/override.conf", SEED_OVERRIDE)
    _write(root, "/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n")
    _write(root, "/etc/ld.so.conf.d/libc.conf", "/usr/local/lib\n")
    _write(root, "/etc/ld.so.preload", "/opt/vgpu/lib/libvgpu-cuda.so\n")
    os.makedirs(os.path.join(root, "var/lib"), exist_ok=True)


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
    from fixer.render import Painter, plan_text

    root = tempfile.mkdtemp(prefix="vgpu-fix-demo-")
    paint = Painter()
    try:
        build_seed_host(root)
        before = snapshot_tree(root)
        profile = profiles.load("h100-vgpu", root)
        echo(paint(f"== 1. A broken host like the seed's, in {root}: vgpu-fix doctor --log <the seed's log>", "head"))
        diagnosis = doctor.diagnose(root, SEED_LOG)
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
        echo("Next on a real host: `vgpu-fix doctor`, `vgpu-fix plan --profile h100-vgpu`, then apply; "
             "apply runs `vgpu-fix verify` and rolls back by itself if the CUDA backend does not load.")
        return 0 if same and not second.pending else 1
    finally:
        if keep:
            echo(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)
