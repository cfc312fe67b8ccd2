"""The demo's host needs no compiler: fixer.demo_elf writes ELF files that the real loader maps and
runs and that vgpu-fix reads like any other (SONAME, exports, the embedded Ollama version)."""

from __future__ import annotations

import json
import subprocess
import sys

from fixer.demo import build_demo_host, snapshot_tree
from fixer.demo_elf import program_with_version, shared_object
from fixer.facts.elf import read_elf
from fixer.ollama.detect import embedded_version


def test_a_written_shared_object_is_read_and_really_loaded(tmp_path):
    path = tmp_path / "libvgpu-cuda.so"
    path.write_bytes(shared_object("libcuda.so.1", ["cuInit", "cuDriverGetVersion", "dlopen"], ("libc.so.6",)))
    info = read_elf(path)
    assert (info.soname, info.needed, info.is_shared_object) == ("libcuda.so.1", ["libc.so.6"], True)
    assert [d.name for d in info.defined] == ["cuInit", "cuDriverGetVersion", "dlopen"] and info.interposes == ["dlopen"]
    ran = subprocess.run([sys.executable, "-c", f"import ctypes; print(ctypes.CDLL({str(path)!r}).cuInit(0))"],
                         capture_output=True, text=True)
    assert ran.stdout.strip() == "0", ran.stderr  # glibc maps it, resolves the symbol, the function returns 0


def test_a_written_program_carries_the_version_as_a_go_release_build_does(tmp_path):
    path = tmp_path / "ollama"
    path.write_bytes(program_with_version("0.32.15"))
    assert embedded_version(str(tmp_path), "/ollama") == ("0.32.15", "/ollama: embedded version string 0.32.15")


def test_fix_on_the_demo_host_chooses_the_library_path_profile_and_changes_nothing_on_a_dry_run(tmp_path, cli):
    root = str(tmp_path)
    build_demo_host(root)
    before = snapshot_tree(root)
    proc = cli("fix", "--root", root, "--dry-run", "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 4 and doc["profile"] == "h100-vgpu", doc["msg"]
    assert doc["evidence"]["installation"]["version"] == "0.32.15"
    assert doc["evidence"]["installation"]["llama_server"] == "/usr/local/lib/ollama/llama-server"
    variables = doc["choices"]["variables"]
    assert (variables["shim_dir"], variables["cuda_shim"], variables["pci_device"]) == (
        "/opt/vgpu/lib", "libvgpu-cuda.so", "0x2330")
    assert snapshot_tree(root) == before
