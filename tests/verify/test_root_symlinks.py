"""A root whose lib/ollama is an absolute symlink inside it (`/usr/local/lib/ollama -> /opt/ollama`, a
common layout): verify and doctor see the root's tree, as the kernel would after chroot, and never the
tree at that path on the operator's own machine."""

from __future__ import annotations

import os
import shutil

import pytest

from fixer.demo import build_seed_host
from fixer.doctor import snapshot
from fixer.doctor.verdict import diagnose
from fixer.model.profile import Verify
from fixer.verify.layers import check_environment

LIB = "/usr/local/lib/ollama"


def _moved_host(tmp_path, target: str) -> str:
    """The seed host with lib/ollama moved to `target` (inside the root) and linked from its usual place."""
    root = tmp_path / "root"
    root.mkdir()
    build_seed_host(str(root))
    moved = root / target.lstrip("/")
    moved.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(root / LIB.lstrip("/")), moved)
    os.symlink(target, root / LIB.lstrip("/"))
    return str(root)


@pytest.fixture(params=["/opt/ollama", "operator"])
def moved_root(request, tmp_path) -> str:
    """`operator`: the link names a directory that also exists on this machine, holding another tree
    (folder cuda_v99 only): reading through the live host would show cuda_v99."""
    if request.param == "/opt/ollama":
        return _moved_host(tmp_path, "/opt/ollama")
    decoy = tmp_path / "operator-ollama"
    (decoy / "cuda_v99").mkdir(parents=True)
    (decoy / "cuda_v99" / "libggml-cuda.so").write_bytes(b"")
    return _moved_host(tmp_path, str(decoy))


def test_verify_scans_the_roots_folders_through_the_link(moved_root):
    spec = Verify(ollama_lib=LIB, library="cuda_v12")
    check = check_environment(moved_root, spec, {"OLLAMA_LLM_LIBRARY": "cuda_v12"}, None, 10)
    assert check.status == "pass", check
    assert check.evidence[0] == f"library folders under {LIB}: cuda_v12, cuda_v13"


def test_doctor_reads_the_roots_library_dir_through_the_link(moved_root):
    facts = snapshot.gather(moved_root)
    assert facts.lib_present
    assert sorted(facts.lib_dirs) == ["cuda_v12", "cuda_v13"]
    assert "libcudart.so.12" in facts.lib_dirs["cuda_v12"]


def test_doctor_finds_the_same_causes_as_with_the_tree_in_place(moved_root, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    build_seed_host(str(plain))
    in_place = diagnose(str(plain), None)
    linked = diagnose(moved_root, None)
    assert [f.id for f in linked.findings] == [f.id for f in in_place.findings]
    assert linked.findings, "the seed host is broken: doctor must find its causes"


def _decoy_link(tmp_path, root: str, path: str, inside: dict[str, str], outside: dict[str, str]) -> None:
    """`path` of the root becomes an absolute link to a directory that exists both inside the root (files
    `inside`) and on this machine (files `outside`): only the first may ever be read."""
    target = str(tmp_path / "operator-side" / path.strip("/").replace("/", "-"))
    for base, files in ((root + target, inside), (target, outside)):
        os.makedirs(base, exist_ok=True)
        for name, text in files.items():
            with open(os.path.join(base, name), "w") as fh:
                fh.write(text)
    real = os.path.join(root, path.lstrip("/"))
    if os.path.isdir(real):
        shutil.rmtree(real)
    os.symlink(target, real)


def test_ld_so_conf_includes_resolve_inside_the_root(tmp_path):
    from fixer.facts.ldso import ld_so_conf_dirs

    root = _moved_host(tmp_path, "/opt/ollama")
    with open(os.path.join(root, "etc/ld.so.conf"), "w") as fh:
        fh.write("include /etc/ld.so.conf.d/*.conf\n")
    _decoy_link(tmp_path, root, "/etc/ld.so.conf.d", {"vgpu.conf": "/opt/vgpu/lib\n"},
                {"operator.conf": "/operators/own/lib\n"})
    assert ld_so_conf_dirs(root) == ["/opt/vgpu/lib"]


def test_a_paths_state_is_read_through_parents_inside_the_root(tmp_path):
    from fixer.facts.paths import read_state

    root = _moved_host(tmp_path, "/opt/ollama")
    _decoy_link(tmp_path, root, "/etc/nvidia", {"gridd.conf": "inside\n"}, {"gridd.conf": "operator's\n"})
    assert read_state(root, "/etc/nvidia/gridd.conf").data == b"inside\n"
    assert read_state(root, f"{LIB}/cuda_v12/libcudart.so.12").kind == "file"
