"""fixer.facts.linker: ld.so's search and symbol binding, replayed inside a fake host root."""

from __future__ import annotations

import json

import pytest

from fixer.facts.linker import resolve_in_root
from fixer.model.profile import Verify
from fixer.ollama.runner_engine import resolve as resolve_backend
from tests.native import layout

SHIM = f"{layout.SHIM_DIR}/libvgpu-cuda.so"
CUDART_SHIM = f"{layout.SHIM_DIR}/libvgpu-cudart.so"


def libpath(root, native):
    return layout.use_library_path(root)


def preload(root, native):
    return layout.use_preload(root)


def ld_so_conf_with_ldconfig(root, native):
    layout.use_library_path(root)
    layout.add_ld_so_conf(root, "vgpu.conf", [layout.SHIM_DIR])
    layout.run_ldconfig(root)
    return {}


def ld_so_conf_without_ldconfig(root, native):
    layout.use_library_path(root)
    layout.add_ld_so_conf(root, "vgpu.conf", [layout.SHIM_DIR])
    return {}


def no_libcuda_link(root, native):
    return {"LD_LIBRARY_PATH": layout.SHIM_DIR}


def preload_wrong_soname(root, native):
    layout.place(root, SHIM, native["cuda-shim-wrong-soname"])
    return {"LD_PRELOAD": SHIM}


def shim_missing_symbol(root, native):
    layout.place(root, SHIM, native["cuda-shim-no-memcreate"])
    return layout.use_library_path(root)


def preload_dlopen_interposer(root, native):
    layout.place(root, SHIM, native["cuda-shim-dlopen"])
    return {"LD_PRELOAD": SHIM}


def ld_so_preload_dlopen_interposer(root, native):
    layout.place(root, SHIM, native["cuda-shim-dlopen"])
    (root / "etc/ld.so.preload").write_text(SHIM + "\n")
    return {}


def stray_cublas(root, native):
    layout.place(root, f"{layout.OLLAMA_LIB}/libcublas.so.12", native["cublas-stray"])
    return layout.use_library_path(root)


def swapped_preload_order(root, native):
    return layout.use_preload(root, ("libvgpu-cudart.so", "libvgpu-cuda.so", "libvgpu-nvml.so"))


def deliberate_preload_order(root, native):
    return layout.use_preload(root, ("libvgpu-cuda.so", "libvgpu-cudart.so", "libvgpu-nvml.so"))


def missing_preload_file(root, native):
    return {"LD_PRELOAD": f"{layout.SHIM_DIR}/libvgpu-gone.so:{SHIM}"}


def wrong_machine_candidate_first(root, native, tmp_path=None):
    data = bytearray(native["cublas-12"].read_bytes())
    data[18:20] = (183).to_bytes(2, "little")
    target = root / layout.OLLAMA_LIB.lstrip("/") / "libcublas.so.12"
    target.write_bytes(bytes(data))
    return layout.use_library_path(root)


CASES = [
    # name, setup, ok, error code expected first (None when ok), text in the cause
    ("library path + libcuda.so.1 link", libpath, True, None, None),
    ("preloaded shims", preload, True, None, None),
    ("deliberate preload order", deliberate_preload_order, True, None, None),
    ("ld.so.conf.d + ldconfig", ld_so_conf_with_ldconfig, True, None, None),
    ("wrong-machine candidate skipped", wrong_machine_candidate_first, True, None, None),
    ("ld.so.conf.d without ldconfig", ld_so_conf_without_ldconfig, False, "library-missing", "libcuda.so.1"),
    ("no libcuda.so.1 link", no_libcuda_link, False, "library-missing", "libcuda.so.1"),
    ("preload with wrong SONAME", preload_wrong_soname, False, "library-missing", "SONAME libvgpu-cuda.so"),
    ("shim missing a symbol", shim_missing_symbol, False, "symbol-missing", "cuMemCreate"),
    ("preloaded dlopen interposer", preload_dlopen_interposer, False, "preload-interposes-loader", "dlopen"),
    ("dlopen interposer in /etc/ld.so.preload", ld_so_preload_dlopen_interposer, False,
     "preload-interposes-loader", "dlopen"),
    ("stray libcublas.so.12 shadows Ollama's", stray_cublas, False, "symbol-missing", "cublasCreate_v2"),
    ("swapped preload order", swapped_preload_order, False, "preload-order", "libvgpu-cudart.so"),
    ("missing preload file", missing_preload_file, False, "preload-unusable", "libvgpu-gone.so"),
]


@pytest.mark.parametrize("name, setup, ok, code, text", CASES, ids=[c[0] for c in CASES])
def test_resolution(make_host, native, name, setup, ok, code, text):
    root = make_host()
    res = resolve_backend(str(root), Verify(), setup(root, native))
    errors = [f for f in res.findings if f.level == "error"]
    assert res.ok is ok, res.evidence
    if ok:
        assert res.cause is None and not res.missing_libraries and not res.missing_symbols
        assert res.object("libcuda.so.1") is not None
    else:
        assert errors[0].code == code
        assert text in res.cause
        assert res.fix
    json.dumps(res.to_dict())


@pytest.mark.parametrize("setup, origin, group", [
    (libpath, "LD_LIBRARY_PATH", "backend"),
    (preload, "preload", "preload"),
    (ld_so_conf_with_ldconfig, "ld.so.cache", "backend"),
])
def test_where_libcuda_comes_from(make_host, native, setup, origin, group):
    root = make_host()
    cuda = resolve_backend(str(root), Verify(), setup(root, native)).object("libcuda.so.1")
    assert (cuda.path, cuda.origin, cuda.group) == (SHIM, origin, group)


def test_evidence_names_the_file_a_linked_soname_resolves_to(make_host, native):
    root = make_host()
    res = resolve_backend(str(root), Verify(), libpath(root, native))
    line = next(e for e in res.evidence if e.startswith("libcuda.so.1 => "))
    assert line.startswith(f"libcuda.so.1 => {SHIM} [LD_LIBRARY_PATH")  # the file that really loads
    assert line.endswith(f"(found as {layout.SHIM_DIR}/libcuda.so.1)")  # through the profile's link


def test_runner_search_order_puts_ollama_dirs_first(make_host, native):
    root = make_host()
    res = resolve_backend(str(root), Verify(), {"LD_LIBRARY_PATH": "/opt/vgpu/lib:/usr/lib/extra"})
    assert res.library_path == ["/usr/local/lib/ollama", "/usr/local/lib/ollama/cuda_v12", "/opt/vgpu/lib",
                                "/usr/lib/extra"]


def test_shadowing_reports_winner_and_shadowed(make_host, native):
    root = make_host()
    res = resolve_backend(str(root), Verify(), stray_cublas(root, native))
    cublas = res.object("libcublas.so.12")
    assert cublas.path == f"{layout.OLLAMA_LIB}/libcublas.so.12"
    assert cublas.shadowed == [f"{layout.OLLAMA_LIB}/cuda_v12/libcublas.so.12"]
    assert any(f.code == "shadowed" and f.level == "warning" for f in res.findings)
    assert "files" in res.fix and "absent" in res.fix


def test_wrong_machine_candidate_is_skipped_with_reason(make_host, native):
    root = make_host()
    res = resolve_backend(str(root), Verify(), wrong_machine_candidate_first(root, native))
    cublas = res.object("libcublas.so.12")
    assert cublas.path == f"{layout.OLLAMA_LIB}/cuda_v12/libcublas.so.12"
    skipped = [c for c in cublas.candidates if c.status == "skipped"]
    assert [c.path for c in skipped] == [f"{layout.OLLAMA_LIB}/libcublas.so.12"]
    assert "EM_AARCH64" in skipped[0].detail


def test_preloaded_runtime_is_not_ollamas(make_host, native):
    root = make_host()
    env = dict(layout.use_library_path(root), LD_PRELOAD=CUDART_SHIM)
    res = resolve_backend(str(root), Verify(), env)
    assert res.ok
    assert res.object("libcudart.so.12").path == CUDART_SHIM
    (warning,) = [f for f in res.findings if f.code == "cudart-not-bundled"]
    assert CUDART_SHIM in warning.message


def test_missing_backend(make_host):
    root = make_host()
    res = resolve_backend(str(root), Verify(library="cuda_v11"), {})
    assert not res.ok and res.findings[0].code == "backend-missing"


def test_missing_library_lists_where_it_looked(make_host, native):
    root = make_host()
    res = resolve_backend(str(root), Verify(), no_libcuda_link(root, native))
    (missing,) = res.missing_libraries
    assert missing["name"] == "libcuda.so.1"
    assert missing["needed_by"] == f"{layout.OLLAMA_LIB}/cuda_v12/libggml-cuda.so"


@pytest.mark.parametrize("links, path, expected", [
    ({"/a/l": "/b"}, "/a/l/x", "/b/x"),
    ({"/a/l": "../b"}, "/a/l/x", "/b/x"),
    ({"/a/l": "../../../../b"}, "/a/l/x", "/b/x"),  # '..' cannot climb out of the root
    ({"/a/l": "/a/l"}, "/a/l", None),  # loop
    ({}, "/b/missing", None),
])
def test_resolve_in_root_has_chroot_semantics(tmp_path, links, path, expected):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b/x").write_text("")
    for link, target in links.items():
        (tmp_path / link.lstrip("/")).symlink_to(target)
    assert resolve_in_root(str(tmp_path), path) == expected
