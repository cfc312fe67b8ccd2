"""fixer.facts.elf: the facts of one ELF file."""

from __future__ import annotations

import pytest

from fixer.facts.elf import ElfError, read_elf, read_header


@pytest.mark.parametrize("key, soname", [
    ("cuda-shim", "libcuda.so.1"),
    ("cuda-shim-wrong-soname", "libvgpu-cuda.so"),
    ("cudart-12", "libcudart.so.12"),
    ("cudart-shim", "libcudart.so.12"),
    ("nvml-shim", "libnvidia-ml.so.1"),
    ("ggml-cuda-12", None),
])
def test_soname(native, key, soname):
    info = read_elf(native[key], symbols=False)
    assert info.soname == soname
    assert info.is_shared_object


def test_backend_needed_in_link_order(native):
    info = read_elf(native["ggml-cuda-12"])
    assert info.needed[:5] == ["libggml-base.so.0", "libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12",
                               "libcuda.so.1"]


def test_versioned_imports_name_their_file(native):
    refs = {r.name: r for r in read_elf(native["ggml-cuda-12"]).undefined}
    assert (refs["cudaGetDeviceCount"].version, refs["cudaGetDeviceCount"].file) == ("libcudart.so.12",
                                                                                     "libcudart.so.12")
    assert (refs["cublasCreate_v2"].version, refs["cublasCreate_v2"].file) == ("libcublas.so.12", "libcublas.so.12")
    assert refs["cuMemCreate"].version is None and not refs["cuMemCreate"].weak


def test_version_definitions_and_default_versions(native):
    info = read_elf(native["cudart-12"])
    assert info.versions_defined == ["libcudart.so.12"]
    (count,) = info.definitions()["cudaGetDeviceCount"]
    assert (count.version, count.hidden) == ("libcudart.so.12", False)


def test_real_cuda_runtime_wheel(native):
    info = read_elf(native["cudart-real"])
    assert info.soname == "libcudart.so.12"
    assert "libcudart.so.12" in info.versions_defined
    assert "cudaGetDeviceCount" in info.definitions()


def test_hidden_versions_are_marked():
    memcpy = read_elf("/lib/x86_64-linux-gnu/libc.so.6").definitions()["memcpy"]
    assert {(d.version, d.hidden) for d in memcpy} >= {("GLIBC_2.2.5", True), ("GLIBC_2.14", False)}


@pytest.mark.parametrize("key, interposes", [
    ("cuda-shim", []),
    ("cuda-shim-dlopen", ["dlopen"]),
])
def test_interposed_loader_functions(native, key, interposes):
    assert read_elf(native[key]).interposes == interposes


def test_missing_symbol_variant_lacks_it(native):
    assert "cuMemCreate" in read_elf(native["cuda-shim"]).definitions()
    assert "cuMemCreate" not in read_elf(native["cuda-shim-no-memcreate"]).definitions()


def test_header_of_wrong_machine(native, tmp_path):
    data = bytearray(native["cublas-12"].read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # e_machine = EM_AARCH64
    (tmp_path / "arm.so").write_bytes(bytes(data))
    header = read_header(tmp_path / "arm.so")
    assert (header.elf_class, header.machine) == (64, "EM_AARCH64")
    assert not header.compatible(read_header(native["cublas-12"]))


@pytest.mark.parametrize("content, reason", [
    (b"", "not an ELF file"),
    (b"INPUT(-lfoo)\n", "not an ELF file"),
    (b"\x7fELF", "file too short"),
    (b"\x7fELF\x03\x01" + bytes(20), "invalid ELF class"),
])
def test_not_elf(tmp_path, content, reason):
    path = tmp_path / "lib.so"
    path.write_bytes(content)
    with pytest.raises(ElfError, match=reason):
        read_elf(path)


def test_truncated(native, tmp_path):
    path = tmp_path / "cut.so"
    path.write_bytes(native["cudart-12"].read_bytes()[:600])
    with pytest.raises(ElfError, match="cannot parse ELF"):
        read_elf(path)


def test_missing_file(tmp_path):
    with pytest.raises(ElfError, match="No such file"):
        read_elf(tmp_path / "absent.so")


def test_pyelftools_is_imported_lazily():
    import subprocess
    import sys

    code = "import sys, fixer.facts.elf, fixer.facts.linker, fixer.verify.loadprobe, fixer.ollama.runner_engine; print('elftools' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
