"""Writes are safe: never through a symlink (parents included, even one swapped in after the check),
exact modes and owners whatever the umask, a 0700 state dir, and no temp file after a failure."""

from __future__ import annotations

import os
import stat

import pytest

from fixer import profiles
from fixer.apply import transaction as applier
from fixer.apply import writes
from fixer.apply.journal import Journal
from fixer.errors import Conflict


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside"
    path.mkdir()
    (path / "victim").write_text("precious\n")
    return str(path)


def test_write_file_refuses_a_symlinked_parent_and_leaves_its_target_alone(seed_root, outside):
    os.symlink(outside, os.path.join(seed_root, "etc/evil"))
    with pytest.raises(Conflict, match="parent directory /etc/evil is a symlink"):
        writes.write_file(seed_root, "/etc/evil/victim", b"owned\n", 0o644)
    assert open(os.path.join(outside, "victim")).read() == "precious\n"
    assert os.listdir(outside) == ["victim"]


def test_a_parent_swapped_for_a_symlink_after_the_check_is_still_refused(seed_root, outside, monkeypatch):
    """The check-then-write race: the walk by directory descriptors catches what lstat missed."""
    real_dir = os.path.join(seed_root, "etc/raced")
    os.mkdir(real_dir)
    monkeypatch.setattr(writes, "_guard", lambda root, path: None)  # the race: the check already passed
    os.rmdir(real_dir)
    os.symlink(outside, real_dir)
    with pytest.raises(Conflict, match="/etc/raced: is a symlink or not a directory"):
        writes.write_file(seed_root, "/etc/raced/victim", b"owned\n", 0o644)
    with pytest.raises(Conflict):
        writes.remove(seed_root, "/etc/raced/victim")
    assert open(os.path.join(outside, "victim")).read() == "precious\n"


def test_writing_over_a_symlink_replaces_the_link_not_its_target(seed_root, outside):
    link = os.path.join(seed_root, "etc/ld.so.conf.d/vgpu-fix.conf")
    os.symlink(os.path.join(outside, "victim"), link)
    writes.write_file(seed_root, "/etc/ld.so.conf.d/vgpu-fix.conf", b"/opt/vgpu/lib\n", 0o644)
    assert not os.path.islink(link) and open(link).read() == "/opt/vgpu/lib\n"
    assert open(os.path.join(outside, "victim")).read() == "precious\n"


def test_removing_a_symlink_removes_the_link_only(seed_root, outside):
    link = os.path.join(seed_root, "opt/vgpu/lib/libcublas.so.12")
    os.symlink(os.path.join(outside, "victim"), link)
    writes.remove(seed_root, "/opt/vgpu/lib/libcublas.so.12")
    assert not os.path.lexists(link)
    assert open(os.path.join(outside, "victim")).read() == "precious\n"


def test_a_symlink_planted_in_the_temp_file_namespace_is_never_followed(seed_root, outside):
    """Temp names carry a random token; even a planted link under the old predictable name stays inert."""
    directory = os.path.join(seed_root, "etc/systemd/system/ollama.service.d")
    planted = os.path.join(directory, f".zz-vgpu-fix.conf.vgpu-fix-{os.getpid()}.tmp")
    os.symlink(os.path.join(outside, "victim"), planted)
    writes.write_file(seed_root, "/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf", b"[Service]\n", 0o644)
    assert open(os.path.join(outside, "victim")).read() == "precious\n"
    assert os.path.islink(planted)  # not ours: left alone
    assert open(os.path.join(directory, "zz-vgpu-fix.conf")).read() == "[Service]\n"


def test_modes_and_owners_are_exact_whatever_the_umask(seed_root):
    old = os.umask(0o077)
    try:
        outcome = applier.apply(profiles.load("h100-vgpu", seed_root), seed_root)
    finally:
        os.umask(old)
    assert outcome.changed
    for rel, mode in (("etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf", 0o644),
                      ("etc/udev/rules.d/70-vgpu-fix.rules", 0o644), ("etc/udev", 0o755), ("etc/udev/rules.d", 0o755),
                      ("usr/local/lib/vgpu-fix", 0o755), ("etc/ld.so.conf.d/vgpu-fix.conf", 0o644)):
        st = os.lstat(os.path.join(seed_root, rel))
        assert stat.S_IMODE(st.st_mode) == mode, rel
        assert (st.st_uid, st.st_gid) == (0, 0) or os.geteuid() != 0, rel


def test_an_updated_file_keeps_its_owner_and_the_state_dir_is_private(seed_root):
    preload = os.path.join(seed_root, "etc/ld.so.preload")
    if os.geteuid() == 0:
        os.chown(preload, 1234, 5678)
    os.chmod(preload, 0o640)
    applier.apply(profiles.load("h100-vgpu", seed_root), seed_root)
    st = os.lstat(preload)
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    journal = Journal(seed_root)
    assert stat.S_IMODE(os.stat(journal.directory).st_mode) == 0o700
    for directory, dirs, files in os.walk(journal.directory):
        for name in files:
            assert stat.S_IMODE(os.lstat(os.path.join(directory, name)).st_mode) & 0o077 == 0, name
        for name in dirs:
            assert stat.S_IMODE(os.lstat(os.path.join(directory, name)).st_mode) == 0o700, name


def test_a_loose_state_dir_is_tightened_to_0700(seed_root):
    Journal(seed_root).ensure()
    os.chmod(Journal(seed_root).directory, 0o755)
    applier.apply(profiles.load("h100-vgpu", seed_root), seed_root)
    assert stat.S_IMODE(os.stat(Journal(seed_root).directory).st_mode) == 0o700
