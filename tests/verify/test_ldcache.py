"""fixer.facts.ldso against caches really built by ldconfig -r."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from fixer.facts.ldso import LdCacheError, parse_cache, read_cache

LDCONFIG_LINE = re.compile(r"^\t(\S+) \((.*)\) => (.*)$")


def ldconfig_p(cache) -> list[tuple[str, str, str]]:
    out = subprocess.run(["ldconfig", "-p", "-C", str(cache)], capture_output=True, text=True, check=True,
                         env={**os.environ, "LC_ALL": "C"}).stdout
    return [m.groups() for m in map(LDCONFIG_LINE.match, out.splitlines()) if m]


@pytest.fixture
def cache_root(tmp_path, native):
    root = tmp_path / "root"
    for folder, keys in {"opt/vgpu/lib": ["cuda-shim", "nvml-shim", "cudart-shim"],
                         "usr/local/lib/ollama": ["ggml-base"]}.items():
        (root / folder).mkdir(parents=True)
        for key in keys:
            shutil.copy(native[key], root / folder)
    (root / "etc/ld.so.conf.d").mkdir(parents=True)
    (root / "var/cache/ldconfig").mkdir(parents=True)
    (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (root / "etc/ld.so.conf.d/b.conf").write_text("/usr/local/lib/ollama\n/does/not/exist\n")
    (root / "etc/ld.so.conf.d/a.conf").write_text("/opt/vgpu/lib\n")
    return root


@pytest.mark.parametrize("fmt, kind", [("new", "new"), ("compat", "compat"), ("old", "old")])
def test_matches_ldconfig_p(cache_root, fmt, kind):
    subprocess.run(["ldconfig", "-X", "-c", fmt, "-r", str(cache_root)], check=True,
                   env={**os.environ, "LC_ALL": "C"})
    cache = read_cache(cache_root / "etc/ld.so.cache")
    assert cache.format == kind
    assert [(e.soname, e.arch, e.path) for e in cache.entries] == ldconfig_p(cache_root / "etc/ld.so.cache")
    assert {e.soname for e in cache.entries} >= {"libcuda.so.1", "libnvidia-ml.so.1", "libcudart.so.12",
                                                  "libggml-base.so.0"}


def test_no_links_means_entries_point_at_missing_files(cache_root):
    """ldconfig -X records SONAME paths without creating the links: the loader finds nothing there."""
    subprocess.run(["ldconfig", "-X", "-r", str(cache_root)], check=True, env={**os.environ, "LC_ALL": "C"})
    entry = read_cache(cache_root / "etc/ld.so.cache").lookup("libcuda.so.1", 0x0303)
    assert entry.path == "/opt/vgpu/lib/libcuda.so.1"
    assert not (cache_root / "opt/vgpu/lib/libcuda.so.1").exists()


def test_generator_of_new_format(cache_root):
    subprocess.run(["ldconfig", "-X", "-r", str(cache_root)], check=True, env={**os.environ, "LC_ALL": "C"})
    assert "ldconfig" in (read_cache(cache_root / "etc/ld.so.cache").generator or "")


def test_live_host_cache_matches_ldconfig_p():
    cache = read_cache("/etc/ld.so.cache")
    assert [(e.soname, e.arch, e.path) for e in cache.entries] == ldconfig_p("/etc/ld.so.cache")


@pytest.mark.parametrize("data, message", [
    (b"", "unknown magic"),
    (b"not a cache at all", "unknown magic"),
    (b"glibc-ld.so.cache1.1" + b"\x05\x00\x00\x00", "truncated"),
    (b"ld.so-1.7.0\x00\x09\x00\x00\x00", "truncated"),
])
def test_damaged(data, message):
    with pytest.raises(LdCacheError, match=message):
        parse_cache(data)
