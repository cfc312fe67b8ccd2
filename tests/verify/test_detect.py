"""Which Ollama a root holds: the version embedded in the binary, else the layout, else the newest."""

from __future__ import annotations

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


def test_empty_root_is_checked_as_the_newest_generation_and_says_so(tmp_path):
    found = detect.detect(str(tmp_path))
    assert (found.generation, found.how) == ("llama-server", "default")
    assert "newest known generation" in found.note


def test_version_and_layout_disagreeing_is_noted(tmp_path, native):
    """A v0.32 binary whose lib/ollama lacks llama-server: Ollama acts as v0.32 and finds no server."""
    found = detect.detect(str(layout.lay_out_v030(tmp_path, native)))
    assert found.generation == "llama-server" and "will not find what it needs" in found.note
