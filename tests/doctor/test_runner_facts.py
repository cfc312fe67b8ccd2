"""The library rules on real trees: the gatherer asks fixer.facts.linker how ld.so resolves the runner's
libraries (preloads by SONAME, the runner's LD_LIBRARY_PATH, the root's real ld.so.cache, default dirs)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from fixer.doctor.rules import libs, preload
from fixer.doctor.rules.base import Context
from fixer.doctor.snapshot import gather
from tests.doctor.conftest import LIB

SHIM_DIR = "/opt/vgpu/lib"


def findings(tree, rule, env: dict[str, str] | None = None) -> list[str]:
    tree.unit()
    if env:
        tree.dropin("zz-vgpu-fix.conf", "[Service]\n" + "".join(f'Environment="{k}={v}"\n' for k, v in env.items()))
    tree.ollama()
    return [f.id for f in rule(Context(host=gather(str(tree.root))))]


def libcuda(tree, env=None) -> bool:
    """True when doctor says libcuda.so.1 cannot be found by the runner."""
    return findings(tree, libs.libcuda_unresolvable, env) == ["libcuda-unresolvable"]


def test_nothing_provides_libcuda(tree):
    assert libcuda(tree)


def test_libcuda_link_on_the_unit_library_path(tree, elf_libs):
    tree.copy(f"{SHIM_DIR}/libvgpu-cuda.so", elf_libs["driver_plain"])
    tree.link(f"{SHIM_DIR}/libcuda.so.1", "libvgpu-cuda.so")
    assert not libcuda(tree, {"LD_LIBRARY_PATH": SHIM_DIR})


def test_preloaded_shim_counts_only_with_the_soname(tree, elf_libs):
    tree.copy(f"{SHIM_DIR}/libvgpu-cuda.so", elf_libs["driver_plain"])
    assert not libcuda(tree, {"LD_PRELOAD": f"{SHIM_DIR}/libvgpu-cuda.so"})


def test_preloaded_shim_with_another_soname(tree, elf_libs):
    tree.copy(f"{SHIM_DIR}/libvgpu-cuda.so", elf_libs["driver_wrong_soname"])
    assert libcuda(tree, {"LD_PRELOAD": f"{SHIM_DIR}/libvgpu-cuda.so"})


def test_libcuda_in_a_default_directory(tree, elf_libs):
    tree.copy("/usr/lib/x86_64-linux-gnu/libcuda.so.1", elf_libs["driver_plain"])
    assert not libcuda(tree)


def test_a_file_that_is_not_elf_does_not_count(tree):
    """ld.so skips a candidate it cannot map; the old name-listing resolver counted it."""
    tree.write(f"{SHIM_DIR}/libcuda.so.1", "not an ELF")
    assert libcuda(tree, {"LD_LIBRARY_PATH": SHIM_DIR})


def test_ld_so_conf_counts_only_after_ldconfig(tree, elf_libs):
    """The loader reads ld.so.cache, never ld.so.conf.d: listing the directory is not enough (the old
    resolver treated every ld.so.conf directory as searched); after `ldconfig -r ROOT` it resolves."""
    tree.copy(f"{SHIM_DIR}/libvgpu-cuda.so", elf_libs["driver_plain"])
    tree.link(f"{SHIM_DIR}/libcuda.so.1", "libvgpu-cuda.so")
    tree.write("/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n")
    tree.write("/etc/ld.so.conf.d/vgpu.conf", SHIM_DIR + "\n")
    assert libcuda(tree)
    if shutil.which("ldconfig") is None:
        pytest.skip("ldconfig is needed to build the root's cache")
    subprocess.run(["ldconfig", "-X", "-r", str(tree.root)], check=True, capture_output=True,
                   env=dict(os.environ, LC_ALL="C"))
    facts = gather(str(tree.root))
    assert facts.runner.lookups["libcuda.so.1"].origin == "ld.so.cache"
    assert libs.libcuda_unresolvable(Context(host=facts)) == []


def test_stray_cublas_at_the_top_of_lib_ollama(tree, elf_libs):
    tree.copy(f"{LIB}/libcublas.so.12", elf_libs["nvml"])  # any ELF shared object: ld.so takes the first it finds
    found = findings(tree, libs.shim_shadows_bundled)
    assert found == ["shim-shadows-bundled"]


def test_swapped_preload_order(tree, elf_libs):
    tree.copy(f"{SHIM_DIR}/libvgpu-cuda.so", elf_libs["driver_plain"])
    tree.copy(f"{SHIM_DIR}/libvgpu-cudart.so", elf_libs["cudart"])  # also defines cuInit
    swapped = f"{SHIM_DIR}/libvgpu-cudart.so:{SHIM_DIR}/libvgpu-cuda.so"
    assert findings(tree, preload.preload_order, {"LD_PRELOAD": swapped}) == ["preload-order"]


def test_shim_missing_a_driver_entry_point(tree, elf_libs):
    """A real backend (NEEDs libcuda.so.1, imports cuInit and cuMemCreate) against a shim without cuMemCreate."""
    tree.unit()
    tree.dropin("zz-vgpu-fix.conf", f'[Service]\nEnvironment="LD_LIBRARY_PATH={SHIM_DIR}"\n')
    tree.ollama()
    tree.copy(f"{LIB}/cuda_v12/libggml-cuda.so", elf_libs["backend"])
    tree.copy(f"{SHIM_DIR}/libvgpu-cuda.so", elf_libs["driver_dlopen"])  # SONAME libcuda.so.1, no cuMemCreate
    tree.link(f"{SHIM_DIR}/libcuda.so.1", "libvgpu-cuda.so")
    (f,) = libs.shim_missing_exports(Context(host=gather(str(tree.root))))
    assert f.id == "shim-missing-exports" and "cuMemCreate" in f.evidence[0] and "cuInit" not in f.evidence[0]
