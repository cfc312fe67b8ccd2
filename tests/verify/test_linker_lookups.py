"""fixer.facts.linker additions doctor reads: lookups by name, structured preload conflicts, /etc/ld.so.preload
comments and non-strict in-root paths."""

from __future__ import annotations

from fixer.facts.ldso import read_ld_so_preload
from fixer.facts.linker import resolve_in_root
from fixer.model.profile import Verify
from fixer.ollama.runner_engine import resolve as resolve_backend
from tests.native import layout
from tests.verify.test_linker import CUDART_SHIM, SHIM, swapped_preload_order

BUNDLED = f"{layout.OLLAMA_LIB}/cuda_v12"
NAMES = ("libcuda.so.1", "libcudart.so.12", "libnvidia-ml.so.1")


def test_lookups_agree_with_the_backend_closure(make_host):
    root = make_host()
    res = resolve_backend(str(root), Verify(), layout.use_library_path(root), lookup=NAMES)
    cuda, cudart, nvml = (res.lookups[n] for n in NAMES)
    assert (cuda.path, cuda.origin) == (res.object("libcuda.so.1").path, "LD_LIBRARY_PATH")
    assert cudart.found == f"{BUNDLED}/libcudart.so.12" and cudart.path.startswith(BUNDLED + "/")
    assert nvml.origin == "LD_LIBRARY_PATH" and nvml.via == layout.SHIM_DIR  # not in the closure, still located
    assert res.ok


def test_a_preload_shadows_every_file_the_search_meets(make_host):
    root = make_host()
    res = resolve_backend(str(root), Verify(), dict(layout.use_library_path(root), LD_PRELOAD=CUDART_SHIM),
                          lookup=["libcudart.so.12"])
    cudart = res.lookups["libcudart.so.12"]
    assert (cudart.path, cudart.origin, cudart.found) == (CUDART_SHIM, "preload", CUDART_SHIM)
    assert f"{BUNDLED}/libcudart.so.12" in [c.path for c in cudart.candidates if c.status == "shadowed"]
    assert not any(c.status == "wins" for c in cudart.candidates)


def test_lookups_without_a_usable_backend(make_host):
    root = make_host()
    env = layout.use_library_path(root)
    (root / BUNDLED.lstrip("/") / "libggml-cuda.so").write_text("not an ELF")
    plain = resolve_backend(str(root), Verify(), env)
    assert plain.findings[0].code == "backend-not-elf" and plain.objects == [] and plain.lookups == {}
    res = resolve_backend(str(root), Verify(), env, lookup=NAMES)
    assert res.cause == plain.cause and res.lookups["libcuda.so.1"].path == SHIM


def test_preload_conflicts_are_structured(make_host, native):
    root = make_host()
    res = resolve_backend(str(root), Verify(), swapped_preload_order(root, native))
    (conflict,) = [c for c in res.preload_conflicts if c.loser_soname == "libcuda.so.1"]
    assert conflict.winner.endswith("libvgpu-cudart.so") and conflict.symbols
    assert all(s.startswith("cu") and not s.startswith("cuda") for s in conflict.symbols)


def test_ld_so_preload_comments(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ld.so.preload").write_text("# managed by hand\n/a.so /b.so:/c.so  # trailing\n\n#/d.so\n")
    assert read_ld_so_preload(str(tmp_path)) == ["/a.so", "/b.so", "/c.so"]
    assert read_ld_so_preload(str(tmp_path / "nowhere")) == []


def test_resolve_in_root_non_strict_names_a_dangling_target(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/l").symlink_to("/opt/gone/lib.so")
    assert resolve_in_root(str(tmp_path), "/a/l") is None
    assert resolve_in_root(str(tmp_path), "/a/l", strict=False) == "/opt/gone/lib.so"
    assert resolve_in_root(str(tmp_path), "/a/missing/../x", strict=False) == "/a/x"
