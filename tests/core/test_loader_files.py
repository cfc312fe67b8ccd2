"""The loader's own files read as glibc reads them: /etc/ld.so.preload and LD_PRELOAD separators,
ld.so.conf `include` lines, and where a driver package's libcuda.so.<version> is looked for."""

from __future__ import annotations

import os

import pytest

from fixer.facts.ldso import TRUSTED_DIRS, ld_so_conf_dirs, parse_ld_so_preload, split_preload
from fixer.facts.nvidia import nvidia


@pytest.mark.parametrize("text, entries", [
    ("/a.so /b.so:/c.so\t/d.so\n/e.so", ["/a.so", "/b.so", "/c.so", "/d.so", "/e.so"]),  # ": \t\n" (rtld.c strsep)
    ("/a.so\r\n", ["/a.so\r"]),                             # \r is part of the name for glibc
    ("/a.so\u00a0/b.so\n", ["/a.so\u00a0/b.so"]),            # so is a no-break space
    ("/a.so\v/b.so\f/c.so\n", ["/a.so\v/b.so\f/c.so"]),     # and vertical tab, form feed
    ("/a.so # /b.so\n#/c.so\n/d.so", ["/a.so", "/d.so"]),   # `#` to the end of the line
    ("::/a.so::  \t\n", ["/a.so"]),                          # empty fields are skipped
])
def test_ld_so_preload_is_split_at_glibcs_separators_only(text, entries):
    assert parse_ld_so_preload(text) == entries


@pytest.mark.parametrize("value, entries", [
    ("/a.so:/b.so /c.so", ["/a.so", "/b.so", "/c.so"]),     # handle_preload_list: strcspn(p, " :")
    ("/a.so\t/b.so", ["/a.so\t/b.so"]),                     # a tab does not separate LD_PRELOAD
    ("", []),
    (None, []),
])
def test_ld_preload_is_split_at_space_and_colon(value, entries):
    assert split_preload(value) == entries


def _write(root, path, text=""):
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as fh:
        fh.write(text)


def test_an_include_line_with_several_patterns_includes_each(tmp_path):
    """ldconfig.c parse_conf: every blank-separated word after `include` is a pattern of its own."""
    root = str(tmp_path)
    _write(root, "/etc/ld.so.conf", "include /etc/a.d/*.conf\t /etc/b.d/*.conf\nincludex /etc/c.d/*.conf\n")
    _write(root, "/etc/a.d/1.conf", "/opt/a\n")
    _write(root, "/etc/b.d/1.conf", "/opt/b\n")
    _write(root, "/etc/c.d/1.conf", "/opt/c\n")
    assert ld_so_conf_dirs(root) == ["/opt/a", "/opt/b"]  # `includex` is not an include line


@pytest.mark.parametrize("directory", ["/lib/aarch64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64"])
def test_a_driver_packages_libcuda_is_found_in_any_of_the_loaders_default_dirs(tmp_path, directory):
    assert directory in TRUSTED_DIRS
    _write(str(tmp_path), f"{directory}/libcuda.so.550.54.15", "ELF")
    found = nvidia(str(tmp_path))
    assert found.packaged_libcuda == (f"{directory}/libcuda.so.550.54.15",) and found.version == "550.54.15"


def test_one_driver_library_seen_through_a_merged_usr_is_named_once(tmp_path):
    root = str(tmp_path)
    _write(root, "/usr/lib/libcuda.so.570.1", "ELF")
    os.symlink("usr/lib", os.path.join(root, "lib"))
    assert len(nvidia(root).packaged_libcuda) == 1
