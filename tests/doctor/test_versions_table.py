"""The committed version table (fixer/ollama/versions_table.txt), inference over it, and the script that writes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixer.ollama import versions as V
from fixer.ollama.logs import ARCHS_UNKNOWN, CC_UNKNOWN, SYSTEM_INFO_MISSING

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen_ollama_versions.py"

# Every v0.30+ outcome message, with where v0.32.15 logs it (= v0.33.0-rc0..rc2; /work/notes/ollama.md §4).
V032 = {
    "failure during llama-server GPU discovery": "runner.go:522",
    "llama-server GPU discovery watchdog timed out": "runner.go:584",
    "dropping integrated GPU; to enable, set OLLAMA_IGPU_ENABLE=1": "runner.go:405",
    "NVIDIA driver too old": "cuda_compat.go:65",
    "could not verify NVIDIA driver compatibility for CUDA": "cuda_compat.go:39",
    "skipping CUDA device — compute capability not in compiled architectures": "llama_server.go:299",
    "llama-server discovery: timed out waiting for server startup": "llama_server.go:130",
    SYSTEM_INFO_MISSING: "llama_server.go:135",
    CC_UNKNOWN: "llama_server.go:306",
    ARCHS_UNKNOWN: "llama_server.go:311",
    "skipping pseudo-device with zero memory": "llama_server.go:289",
    "inference compute": "types.go:32",
    "server config": "routes.go:1951",
}


def test_committed_table_parses_and_spans_the_releases():
    table = V.table()
    assert (table.first, table.newest) == ((0, 11, 0), (0, 32, 15))
    assert table.same_as_newest == ("0.33.0-rc0", "0.33.0-rc1", "0.33.0-rc2")
    assert all(lo <= hi for spans in table.rows.values() for lo, hi in spans)


@pytest.mark.parametrize("message, location", sorted(V032.items()))
def test_table_covers_every_v030_message_at_the_newest_release(message, location):
    assert any(lo <= (0, 32, 15) <= hi for lo, hi in V.ranges_for(message, location) or [])


def test_older_nvml_message_is_tied_to_v030_0_to_v030_10():
    assert V.ranges_for("could not verify NVIDIA driver compatibility for an older NVIDIA GPU", "cuda_compat.go:28") == [
        ((0, 30, 0), (0, 30, 10))]


@pytest.mark.parametrize(
    "exact, text, unmatched, generation",
    [
        (None, "Ollama 0.32.15 or later (≤ 0.33.0-rc2) (from source locations)", False, "llama-server"),
        ("0.33.0-rc2", "Ollama 0.33.0-rc2", False, "llama-server"),
        ("0.34.1", "Ollama 0.34.1 (newer than the newest known release 0.32.15)", False, "llama-server"),
        ("0.24.0", "Ollama 0.24.0", True, "runner-engine"),
    ],
)
def test_inference_at_the_newest_release_and_beyond(exact, text, unmatched, generation):
    guess = V.infer([("server config", "routes.go:1951")], exact)
    assert (guess.describe(), bool(guess.unmatched), guess.generation) == (text, unmatched, generation)


def test_generation_unknown_when_the_range_straddles_v030():
    guess = V.infer([("inference compute", "types.go:32"), ("inference compute", "types.go:50")])
    assert guess.generation == "llama-server"
    assert V.VersionGuess(ranges=[((0, 24, 0), (0, 24, 0)), ((0, 30, 0), (0, 30, 0))]).generation is None


def test_parse_table_rejects_a_table_without_its_header():
    with pytest.raises(ValueError, match="releases"):
        V.parse_table("server config\n    routes.go:1  0.30.0-0.30.1\n")


# ------------------------------------------------------------ the generator, on a real git repository

RUNNER_GO = {
    "v0.29.0": 'package discover\n\nfunc a() {\n\tslog.Info("discovering available GPUs...")\n}\n',
    "v0.30.0": 'package discover\n\nfunc a() {\n\tslog.Info("discovering available GPUs...")\n}\n',
    "v0.30.1": ('package discover\n\n// moved\nfunc a() {\n\tslog.Info("discovering available GPUs...")\n'
                '\tslog.Warn("llama-server discovery: system_info line not found in output - "+\n'
                '\t\t"CUDA architecture filtering will be disabled. If GPU inference fails, "+\n'
                '\t\t"this may indicate an incompatible llama-server version.", "libDirs", d)\n}\n'),
}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


@pytest.fixture
def ollama_repo(tmp_path) -> Path:
    """A git repository tagged like Ollama: releases, and pre-releases after the newest one."""
    repo = tmp_path / "ollama"
    (repo / "discover").mkdir(parents=True)
    _git(repo, "init", "-q")
    for tag, text in [*RUNNER_GO.items(), ("v0.31.0-rc0", RUNNER_GO["v0.30.1"]), ("v0.31.0-rc1", RUNNER_GO["v0.30.0"])]:
        (repo / "discover" / "runner.go").write_text(text)
        (repo / "discover" / "runner_test.go").write_text('func t() { slog.Info("server config") }\n')
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", tag)
        _git(repo, "tag", tag)
    return repo


def test_generator_writes_the_table_the_parser_reads(ollama_repo, tmp_path):
    out = tmp_path / "table.txt"
    done = subprocess.run([sys.executable, str(SCRIPT), str(ollama_repo), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    table = V.parse_table(out.read_text())
    assert (table.first, table.newest, table.same_as_newest) == ((0, 29, 0), (0, 30, 1), ("0.31.0-rc0",))
    assert table.rows[("discovering available GPUs...", "runner.go:4")] == [((0, 29, 0), (0, 30, 0))]
    assert table.rows[("discovering available GPUs...", "runner.go:5")] == [((0, 30, 1), (0, 30, 1))]
    assert table.rows[(SYSTEM_INFO_MISSING, "runner.go:6")] == [((0, 30, 1), (0, 30, 1))]
    assert not any(message == "server config" for message, _ in table.rows)  # _test.go files are not read
    assert "v0.31.0-rc1 logs from other lines" in done.stderr


def test_generator_reports_a_git_failure_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("git failed:") and "Traceback" not in done.stderr
