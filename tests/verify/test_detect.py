"""Which Ollama a root holds: the version embedded in the binary, else the layout, else the newest."""

from __future__ import annotations

import os

import pytest

from fixer.ollama import detect
from tests.native import layout


@pytest.mark.parametrize("version,generation,noted", [
    ("0.30.0", "llama-server", False), ("0.30.11", "llama-server", False), ("0.32.15", "llama-server", False),
    ("0.33.0", "llama-server", True)])
def test_version_from_the_binarys_go_string_header(tmp_path, native, version, generation, noted):
    """The compiled stand-in embeds the version as `-X version.Version=` does in a stripped PIE Go binary
    (a string header over bytes that run on into the next string); no ollama binary can run here."""
    root = layout.lay_out_v030(tmp_path, native, version=version)
    found = detect.detect(str(root))
    assert (found.version, found.generation, found.how) == (version, generation, "binary")
    assert (found.note is not None and "newer than the newest known release 0.32.15" in found.note) == noted


def test_bare_version_text_without_a_header_is_not_a_version(tmp_path):
    """Only a string header pointing at exactly the bytes counts: a stray "0.31.99" does not."""
    (tmp_path / "usr/local/bin").mkdir(parents=True)
    (tmp_path / "usr/local/bin/ollama").write_bytes(b"\x7fELF" + b"\0" * 60 + b"0.31.99")
    assert detect.embedded_version(str(tmp_path), "/usr/local/bin/ollama")[0] is None


def test_layout_decides_when_the_version_is_unreadable(make_host):
    """The v0.13-v0.24 layout: cuda_v*/libggml-cuda.so and no llama-server (the stand-in is a script)."""
    found = detect.detect(str(make_host()))
    assert (found.generation, found.version, found.how) == ("runner-engine", None, "layout")


def test_a_root_without_any_ollama_says_none_was_found_and_is_checked_as_the_newest_generation(tmp_path):
    found = detect.detect(str(tmp_path))
    assert (found.generation, found.how, found.found) == ("llama-server", "nothing", False)
    assert found.describe() == ("no Ollama found; neither /usr/local/bin/ollama nor /usr/local/lib/ollama exists "
                                "under the root: checked as llama-server, the newest known generation")


def test_a_binary_and_a_layout_that_tell_nothing_fall_back_to_the_newest_generation(tmp_path):
    (tmp_path / "usr/local/lib/ollama").mkdir(parents=True)
    found = detect.detect(str(tmp_path))
    assert (found.generation, found.how) == ("llama-server", "default")
    assert "newest known generation" in found.note


def _fifo_behind_a_link(path: str) -> None:
    os.mkfifo(path + "-0.32")
    os.symlink("ollama-0.32", path)


@pytest.mark.parametrize("make", [os.mkfifo, _fifo_behind_a_link])
def test_an_ollama_that_is_a_fifo_is_named_never_read(tmp_path, make):
    (tmp_path / "usr/local/bin").mkdir(parents=True)
    make(str(tmp_path / "usr/local/bin/ollama"))
    version, said = detect.embedded_version(str(tmp_path), "/usr/local/bin/ollama")
    assert version is None and said.startswith("/usr/local/bin/ollama: version not readable (is a FIFO")


def test_an_ollama_linked_to_a_device_of_this_machine_is_not_followed_out_of_the_root(tmp_path):
    (tmp_path / "usr/local/bin").mkdir(parents=True)
    os.symlink("/dev/zero", tmp_path / "usr/local/bin/ollama")
    assert detect.embedded_version(str(tmp_path), "/usr/local/bin/ollama") == (
        None, "/usr/local/bin/ollama: not found in the root")


def test_version_and_layout_disagreeing_is_noted(tmp_path, native):
    """A v0.32 binary whose lib/ollama lacks llama-server: Ollama acts as v0.32 and finds no server."""
    found = detect.detect(str(layout.lay_out_v030(tmp_path, native)))
    assert found.generation == "llama-server" and "will not find what it needs" in found.note
