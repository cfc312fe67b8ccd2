"""Opt-in: the verify stack against REAL ggml libraries built from source, not gcc fakes.

Build them with `scripts/build_real_ggml.sh SRC OUT` (SRC: an Ollama checkout that vendors ggml, e.g.
tag v0.22.1 or v0.13.1, or a ggml-org/ggml checkout), then run
    VGPU_FIX_REAL_GGML=OUT python -m pytest -q tests/verify/test_real_ggml.py
OUT (or OUT/usr/local/lib/ollama) must hold libggml-base.so* and libggml-cpu-x64.so; the other CPU
variants the script builds (alderlake, skylakex) are used when present. The real CPU backend stands
in for the CUDA one: same registry ABI, same dynamic loading, no GPU needed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fixer.facts.elf import read_elf
from fixer.model.profile import Verify
from fixer.ollama.layout import ggml_base_name
from fixer.ollama.runner_engine import resolve as resolve_backend
from fixer.verify.loadprobe import run_load_probe
from tests.native import layout


def _real_dir() -> Path:
    value = os.environ.get("VGPU_FIX_REAL_GGML")
    if not value:
        pytest.skip("VGPU_FIX_REAL_GGML is not set: no real ggml build (see scripts/build_real_ggml.sh)",
                    allow_module_level=True)
    for candidate in (Path(value) / layout.OLLAMA_LIB.lstrip("/"), Path(value)):
        if (candidate / "libggml-cpu-x64.so").is_file() and any(candidate.glob("libggml-base.so*")):
            return candidate
    pytest.skip(f"VGPU_FIX_REAL_GGML={value} holds no libggml-base.so* and libggml-cpu-x64.so "
                "(build them with scripts/build_real_ggml.sh)", allow_module_level=True)


REAL = _real_dir()
LIB = layout.OLLAMA_LIB
SPEC = Verify(library="cpu_x64", backend="libggml-cpu-x64.so", min_devices=1, timeout=30)
# The instruction sets a CPU variant's ggml_backend_score() requires (ggml-cpu/arch/x86/cpu-feats.cpp).
VARIANT_FLAGS = {"alderlake": ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni"),
                 "skylakex": ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd", "avx512vl",
                              "avx512dq", "avx512bw")}


def _lay_out(root: Path, folder: str = "cpu_x64", backend: str = "libggml-cpu-x64.so",
             as_name: str | None = None, base: bool = True) -> Path:
    """Ollama's tree: libggml-base.so* (links kept) at the top of lib/ollama, the backend in a folder."""
    lib = root / LIB.lstrip("/")
    (lib / folder).mkdir(parents=True, exist_ok=True)
    if base:
        for f in REAL.glob("libggml-base.so*"):
            shutil.copy(f, lib / f.name, follow_symlinks=False)
    shutil.copy(REAL / backend, lib / folder / (as_name or backend))
    return root


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def test_real_elf_facts():
    """SONAME, NEEDED and exported entry points as the real build has them."""
    backend = read_elf(REAL / "libggml-cpu-x64.so")
    needed_base = [n for n in backend.needed if n.startswith("libggml-base.so")]
    assert len(needed_base) == 1, backend.needed
    base = read_elf((REAL / needed_base[0]).resolve())
    assert base.soname == needed_base[0]
    exported = {d.name for d in base.defined}
    assert {"ggml_backend_reg_name", "ggml_backend_reg_dev_count", "ggml_backend_reg_dev_get",
            "ggml_backend_dev_description", "ggml_backend_dev_name", "ggml_backend_dev_memory"} <= exported
    assert {"ggml_backend_init", "ggml_backend_score"} <= {d.name for d in backend.defined}
    assert {r.name for r in backend.undefined if r.name.startswith("ggml_")} <= exported


def test_real_backend_loads_and_reports_its_device(tmp_path):
    root = _lay_out(tmp_path)
    backend = f"{LIB}/cpu_x64/libggml-cpu-x64.so"
    base = ggml_base_name(str(root), backend)
    assert base in [f.name for f in REAL.glob("libggml-base.so*")]
    res = resolve_backend(str(root), SPEC, {})
    assert res.ok, res.evidence
    assert any(o.name == base and o.path.startswith(LIB) for o in res.objects)
    for mode in (None, "translated"):
        probe = run_load_probe(str(root), {}, SPEC, mode=mode)
        assert probe.ok, probe.evidence
        assert probe.base == base and probe.registry == "CPU" and probe.device_count >= 1
        assert probe.devices[0]["name"] == "CPU" and probe.devices[0]["description"]
        assert probe.devices[0]["total"] > 0 and probe.api_version and probe.score and probe.score > 0


def test_missing_libggml_base_fails_naming_it(tmp_path):
    root = _lay_out(tmp_path, base=False)
    base = ggml_base_name(str(root), f"{LIB}/cpu_x64/libggml-cpu-x64.so")
    res = resolve_backend(str(root), SPEC, {})
    assert not res.ok and f"{base} cannot be found" in res.cause
    probe = run_load_probe(str(root), {}, SPEC)
    assert not probe.ok and probe.cause.startswith(f"{base} (NEEDED by the backend) does not load")
    assert "cannot open shared object file" in probe.cause


def test_preloaded_dlopen_interposer_hides_the_real_backend(tmp_path, native):
    """The real backend installed as cuda_v12/libggml-cuda.so; the seed's driver shim, preloaded,
    interposes dlopen and refuses it in processes named ollama*."""
    root = _lay_out(tmp_path, folder="cuda_v12", as_name="libggml-cuda.so")
    spec = Verify(library="cuda_v12", backend="libggml-cuda.so", min_devices=1, timeout=30)
    assert run_load_probe(str(root), {}, spec).ok
    layout.place(root, f"{layout.SHIM_DIR}/libvgpu-cuda.so", native["cuda-shim-dlopen"])
    env = {"LD_PRELOAD": f"{layout.SHIM_DIR}/libvgpu-cuda.so"}
    res = resolve_backend(str(root), spec, env)
    assert not res.ok and any(f.code == "preload-interposes-loader" for f in res.findings)
    probe = run_load_probe(str(root), env, spec)
    assert not probe.ok and not probe.backend_loaded
    assert probe.cause.startswith(f"dlopen is interposed by {layout.SHIM_DIR}/libvgpu-cuda.so")


@pytest.mark.parametrize("variant", sorted(VARIANT_FLAGS))
def test_cpu_variant_verdict_follows_this_cpu(tmp_path, variant):
    """ggml's loader skips a variant whose score is 0; the probe must agree with /proc/cpuinfo."""
    name = f"libggml-cpu-{variant}.so"
    if not (REAL / name).is_file():
        pytest.skip(f"{name} was not built")
    root = _lay_out(tmp_path, folder="cpu", backend=name)
    supported = set(VARIANT_FLAGS[variant]) <= _cpu_flags()
    probe = run_load_probe(str(root), {}, Verify(library="cpu", backend=name, min_devices=1, timeout=30))
    assert probe.backend_loaded, probe.evidence
    assert probe.ok is supported, probe.evidence
    if not supported:
        assert probe.score == 0 and "ggml_backend_score() is 0" in probe.cause


def test_cli_verify_end_to_end(tmp_path, cli):
    root = _lay_out(tmp_path / "root")
    profile = tmp_path / "real-cpu.yaml"
    profile.write_text("extends: h100-vgpu\nname: real-cpu\n"
                       "verify:\n  library: cpu_x64\n  backend: libggml-cpu-x64.so\n  min_devices: 1\n")
    good = cli("verify", "--root", str(root), "--profile", str(profile), "--json")
    doc = json.loads(good.stdout)
    assert good.returncode == 0, good.stdout + good.stderr
    checks = {c["name"]: c for c in doc["verify"]["checks"]}
    assert checks["static"]["status"] == checks["load"]["status"] == "pass"
    assert "registry 'CPU' reports" in json.dumps(checks["load"]["evidence"])
    for f in (root / LIB.lstrip("/")).glob("libggml-base.so*"):
        f.unlink()
    bad = cli("verify", "--root", str(root), "--profile", str(profile), "--json")
    doc = json.loads(bad.stdout)
    assert bad.returncode == 9 and doc["failed"]
    assert "libggml-base.so" in doc["verify"]["cause"] and "cannot be found" in doc["verify"]["cause"]
