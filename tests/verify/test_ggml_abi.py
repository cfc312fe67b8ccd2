"""What real ggml builds do that the CUDA fakes do not: the libggml-base name a backend NEEDs differs
between Ollama releases, and ggml's loader skips a backend whose ggml_backend_score() is 0.

Found against real libraries (tests/verify/test_real_ggml.py): Ollama up to v0.13.1 ships
`libggml-base.so` (SONAME libggml-base.so, no SOVERSION), v0.13.2+ `libggml-base.so.0`; the CPU
variants export ggml_backend_score(), which is 0 on a CPU without the variant's instruction set.
Here gcc builds small stand-ins with exactly those ELF and ABI properties."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fixer.model.profile import Verify
from fixer.ollama.layout import GGML_BASE, ggml_base_name
from fixer.ollama.runner_engine import resolve as resolve_backend
from fixer.verify.loadprobe import run_load_probe
from tests.native import layout
from tests.native.build import HERE

BACKEND_C = r"""
#include "ggml_fake.h"
static const char *reg_name(ggml_backend_reg_t r) { return "CPU"; }
static const char *dev_name(ggml_backend_dev_t d) { return "CPU"; }
static const char *dev_desc(ggml_backend_dev_t d) { return "Stand-in CPU"; }
static void dev_mem(ggml_backend_dev_t d, size_t *f, size_t *t) { *f = 1; *t = 2; }
static struct ggml_backend_reg reg;
static struct ggml_backend_device dev = { { dev_name, dev_desc, dev_mem, 0 }, &reg, 0 };
static size_t count(ggml_backend_reg_t r) { return 1; }
static ggml_backend_dev_t get(ggml_backend_reg_t r, size_t i) { return &dev; }
static struct ggml_backend_reg reg = { 2, { reg_name, count, get, 0 }, 0 };
ggml_backend_reg_t ggml_backend_init(void) { return &reg; }
int ggml_backend_score(void) { return SCORE; }
"""
SPEC = Verify(library="cpu", backend="libggml-cpu-x64.so", min_devices=1, timeout=20)


def _gcc(out: Path, *args: str) -> Path:
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-w", f"-I{HERE}", "-o", str(out), *args],
                   check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def libs(tmp_path_factory) -> dict[str, Path]:
    """Old (pre-v0.13.2) naming: libggml-base.so; CPU-variant backends scoring 1 and 0."""
    d = tmp_path_factory.mktemp("ggml-abi")
    base = _gcc(d / "libggml-base.so", str(HERE / "ggml_base.c"), "-Wl,-soname,libggml-base.so")
    (d / "backend.c").write_text(BACKEND_C)
    out = {"base": base}
    for score in (1, 0):
        (d / f"s{score}").mkdir()
        out[f"score{score}"] = _gcc(d / f"s{score}" / "libggml-cpu-x64.so", str(d / "backend.c"), f"-DSCORE={score}",
                                    "-Wl,--no-as-needed", f"-L{d}", "-l:libggml-base.so")
    return out


def _host(root: Path, libs: dict[str, Path], backend: str = "score1", base_as: str = "libggml-base.so") -> Path:
    layout.place(root, f"{layout.OLLAMA_LIB}/{base_as}", libs["base"])
    layout.place(root, f"{layout.OLLAMA_LIB}/cpu/libggml-cpu-x64.so", libs[backend])
    return root


def test_base_name_is_what_the_backend_needs(libs, tmp_path, native):
    root = _host(tmp_path, libs)
    assert ggml_base_name(str(root), f"{layout.OLLAMA_LIB}/cpu/libggml-cpu-x64.so") == "libggml-base.so"
    layout.place(root, f"{layout.OLLAMA_LIB}/cuda_v12/libggml-cuda.so", native["ggml-cuda-12"])
    assert ggml_base_name(str(root), f"{layout.OLLAMA_LIB}/cuda_v12/libggml-cuda.so") == "libggml-base.so.0"
    assert ggml_base_name(str(root), f"{layout.OLLAMA_LIB}/nowhere/libggml-cuda.so") == GGML_BASE


def test_pre_soversion_install_loads(libs, tmp_path):
    """An install with only libggml-base.so (Ollama <= v0.13.1) is good: the static check and the
    probe look for the name the backend NEEDs, not libggml-base.so.0."""
    root = _host(tmp_path, libs)
    res = resolve_backend(str(root), SPEC, {})
    assert res.ok, res.evidence
    probe = run_load_probe(str(root), {}, SPEC)
    assert probe.ok, probe.evidence
    assert (probe.base, probe.registry, probe.device_count, probe.score, probe.api_version) == (
        "libggml-base.so", "CPU", 1, 1, 2)


def test_base_under_another_name_fails_naming_the_needed_one(libs, tmp_path):
    root = _host(tmp_path, libs, base_as="libggml-base.so.0")
    res = resolve_backend(str(root), SPEC, {})
    assert not res.ok and "libggml-base.so cannot be found" in res.cause
    probe = run_load_probe(str(root), {}, SPEC)
    assert not probe.ok and probe.cause.startswith("libggml-base.so (NEEDED by the backend) does not load")


def test_zero_score_backend_fails_like_ggmls_loader(libs, tmp_path):
    """ggml's loader skips a backend whose ggml_backend_score() is 0 ("not supported on this system")
    without calling ggml_backend_init(): loading is not enough."""
    root = _host(tmp_path, libs, backend="score0")
    assert resolve_backend(str(root), SPEC, {}).ok
    probe = run_load_probe(str(root), {}, SPEC)
    assert not probe.ok
    assert probe.backend_loaded and probe.score == 0 and probe.registry is None
    assert "ggml_backend_score() is 0" in probe.cause
    assert not any(e.get("step") == "ggml_backend_init" for e in probe.events)
