"""Proof levels, one row per case: which checks ran and how they ended, the level asked -> the level
reached, the outcome, verify's exit code, the verdict line, the JSON and the Prometheus series. No row
that did not reach the level it asked for may say pass, ok or 1 (the issue's "an unproven result is not
a pass"); a real service that ran decides over verify's own model of Ollama."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixer import core
from fixer.errors import VERIFY_EXIT
from fixer.model.proof import Level
from fixer.model.verify import Check, VerifyReport
from fixer.render import proof_line, proof_summary

P, F, S = "pass", "fail", "skip"
FILES = {"environment": P, "static": P}
MODELED = {"load": P, "discovery": P}
UNMODELED = "modeled is unverified for Ollama 0.34.0: ..."

# (case, checks by layer, asked, unmodeled) -> (reached, outcome, exit code, words the verdict line starts with)
ROWS = [
    ("static only on a copy, modeled asked", {**FILES, "load": S, "discovery": S}, "modeled", None,
     ("files", "not_proven", 12, "NOT PROVEN: level reached: files (asked: modeled)")),
    ("static only, files asked", {**FILES, "load": S, "discovery": S}, "files", None,
     ("files", "passed", 0, "passed at files")),
    ("probes ran and passed", {**FILES, **MODELED}, "modeled", None,
     ("modeled", "passed", 0, "passed at modeled")),
    ("static fails", {"environment": P, "static": F, "load": S, "discovery": S}, "modeled", None,
     (None, "failed", 9, "FAILED: cuda_v12/libggml-cuda.so does not load")),
    ("a probe fails", {**FILES, "load": P, "discovery": F}, "modeled", None,
     ("files", "failed", 9, "FAILED:")),
    ("--service asked on a copy: skipped", {**FILES, **MODELED, "service": S}, "service", None,
     ("modeled", "not_proven", 12, "NOT PROVEN: level reached: modeled (asked: service)")),
    ("--service --model, both skipped", {**FILES, **MODELED, "service": S, "model": S}, "model", None,
     ("modeled", "not_proven", 12, "NOT PROVEN: level reached: modeled (asked: model)")),
    ("the service reports the GPU", {**FILES, **MODELED, "service": P}, "service", None,
     ("service", "passed", 0, "passed at service")),
    ("the service falls back to the CPU", {**FILES, **MODELED, "service": F}, "service", None,
     ("modeled", "failed", 9, "FAILED:")),
    ("the model disagrees, the service reports the GPU", {**FILES, "load": F, "discovery": P, "service": P},
     "service", None, ("service", "passed", 0, "passed at service")),
    ("no probes on the live root, the service reports the GPU", {**FILES, "load": S, "discovery": S, "service": P},
     "service", None, ("service", "passed", 0, "passed at service")),
    ("the model loads into GPU memory", {**FILES, **MODELED, "service": P, "model": P}, "model", None,
     ("model", "passed", 0, "passed at model")),
    ("the model loads into system memory", {**FILES, **MODELED, "service": P, "model": F}, "model", None,
     ("service", "failed", 9, "FAILED:")),
    ("a release newer than any source read, modeled only", {**FILES, **MODELED}, "service", UNMODELED,
     ("files", "not_proven", 12, "NOT PROVEN: level reached: files (asked: service)")),
    ("a release newer than any source read, the service decides", {**FILES, **MODELED, "service": P}, "service",
     UNMODELED, ("service", "passed", 0, "passed at service")),
]


def report_of(checks: dict[str, str], asked: str, unmodeled: str | None) -> VerifyReport:
    made = [Check(name, status, f"{name} {status}", cause=f"{name} broke" if status == F else None,
                  flag="--probe" if status == S and name in MODELED else None) for name, status in checks.items()]
    return VerifyReport("/r", "h100-vgpu", "ollama.service", None, {}, "cuda_v12/libggml-cuda.so", made,
                        asked=Level(asked), unmodeled=unmodeled)


@pytest.mark.parametrize("case,checks,asked,unmodeled,expected", ROWS, ids=[r[0] for r in ROWS])
def test_each_row(case, checks, asked, unmodeled, expected):
    reached, outcome, code, verdict = expected
    report = report_of(checks, asked, unmodeled)
    doc = report.to_dict()
    assert (doc["reached"], doc["outcome"], int(VERIFY_EXIT[doc["outcome"]])) == (reached, outcome, code)
    assert doc["asked"] == asked and doc["ok"] is (outcome == "passed")
    line = proof_line(doc)
    assert line.startswith(verdict), line
    if outcome != "passed":
        assert not line.lower().startswith("pass") and " ok" not in line.lower()
    # Every level above the one reached says why and, where it was asked, what reaches it.
    above = [r for r in doc["not_reached"]]
    assert [r["level"] for r in above] == [lv.value for lv in Level if reached is None or lv > Level(reached)]
    for row in above:
        assert row["why"] and row["asked"] is (Level(row["level"]) <= Level(asked))
        if row["asked"] and outcome == "not_proven":
            assert row["level"] in line and row["why"] in line
    assert proof_summary(report) == {"asked": asked, "reached": reached, "outcome": outcome,
                                     "not_reached": doc["not_reached"]}
    samples = _metrics({**doc, "time": "2026-12-06T02:00:00+0000"})
    assert samples["vgpu_fix_verify_ok"] == (1 if outcome == "passed" else 0)
    assert samples["vgpu_fix_verify_level"] == (0 if reached is None else Level(reached).rank + 1)
    assert samples["vgpu_fix_verify_asked_level"] == Level(asked).rank + 1
    assert samples["vgpu_fix_last_verify_timestamp_seconds"] == 1796522400


def test_a_model_overruled_by_the_service_is_named():
    report = report_of({**FILES, "load": F, "discovery": P, "service": P}, "service", None)
    assert [c.name for c in report.overruled] == ["load"] and report.cause is None


def test_a_verdict_recorded_before_proof_levels_is_never_a_pass():
    old = {"time": "2026-11-01T10:00:00+0000", "ok": True, "backend": "cuda_v12/libggml-cuda.so", "cause": None}
    assert "level unknown, nothing proven" in proof_line(old)
    assert _metrics(old)["vgpu_fix_verify_ok"] == 0


def _metrics(last_verify: dict) -> dict[str, float]:
    doc = {"profile": "h100-vgpu", "root": "/r", "last_verify": last_verify, "drift": {"pending": 0},
           "applied": None, "watch": {"installed": False, "enabled": False},
           "ollama": {"version": "0.32.15", "generation": "llama-server"}}
    return {s.name: s.value for family in text_string_to_metric_families(core.prometheus_text(doc))
            for s in family.samples}


@pytest.mark.parametrize("version,unverified", [
    ("0.32.15", False), ("0.33.0-rc2", False), ("0.13.0", False), ("0.24.0", False), (None, False),
    ("0.33.0", True), ("0.33.3", True), ("0.34.0", True), ("0.34.2", True)])
def test_a_release_newer_than_any_source_read_leaves_modeled_unverified_and_asks_for_the_service(version, unverified):
    from fixer.ollama.generations import unmodeled
    from fixer.verify.layers import default_asked

    why = unmodeled(version)
    assert bool(why) is unverified
    report = report_of({**FILES, **MODELED}, "modeled", why)
    assert default_asked(report, service=False, model=None) == (Level.SERVICE if unverified else Level.MODELED)
    if unverified:
        assert why.startswith(f"modeled is unverified for Ollama {version}") and "0.32.15" in why


# OLLAMA_LLM_LIBRARY / OLLAMA_VULKAN -> the folders Ollama bootstraps in turn (v0.32.15 discover/runner.go:84-122)
# and the seconds the service check waits: 30 s each, one 30 s second pass, 15 s to start.
BUDGETS = [
    ({"OLLAMA_LLM_LIBRARY": "cuda_v12"}, ["cuda_v12"], 75),
    ({}, ["cuda_v12", "cuda_v13", "vulkan"], 135),
    ({"OLLAMA_VULKAN": "0"}, ["cuda_v12", "cuda_v13"], 105),
    ({"OLLAMA_VULKAN": "no"}, ["cuda_v12", "cuda_v13", "vulkan"], 135),  # not a Go bool: Vulkan stays on
    ({"OLLAMA_LLM_LIBRARY": "cuda"}, [], 45),  # names no folder: every one is skipped
    ({"OLLAMA_LLM_LIBRARY": "mlx_cuda13"}, ["cuda_v12", "cuda_v13", "vulkan"], 135),  # mlx_* is exempt
]


@pytest.mark.parametrize("env,folders,seconds", BUDGETS, ids=[str(b[0]) for b in BUDGETS])
def test_the_service_check_waits_as_long_as_ollamas_own_discovery_may_take(tmp_path, env, folders, seconds):
    from fixer import profiles
    from fixer.ollama.layout import scanned_folders
    from fixer.verify.service import discovery_budget

    lib = tmp_path / "usr/local/lib/ollama"
    for name in ("cuda_v12", "cuda_v13", "vulkan"):
        (lib / name).mkdir(parents=True)
        (lib / name / f"libggml-{name.split('_')[0]}.so").write_bytes(b"")
    (lib / "notes").mkdir()  # no ggml file: not a library folder
    (lib / "llama-server").write_bytes(b"")
    assert scanned_folders(str(tmp_path), "/usr/local/lib/ollama", env) == folders
    budget, why = discovery_budget(str(tmp_path), profiles.load("h100-vgpu", str(tmp_path)).verify, env)
    assert budget == seconds and f"{len(folders)} folder(s) scanned" in why


def test_apply_told_not_to_check_the_restarted_service_says_so_in_the_level_reached(monkeypatch):
    from fixer import profiles
    from fixer.verify import layers
    from fixer.verify.service import Restart

    probed = report_of({**FILES, **MODELED}, "modeled", None)
    monkeypatch.setattr(layers, "verify", lambda *a, **k: probed)
    restarted = Restart("system", "ollama.service", "2026-12-06 02:00:00", "4242", 0.0)
    report = layers.check_for_apply(profiles.load("h100-vgpu"), "/", restarted=restarted, service_check=False)
    doc = report.to_dict()
    assert (doc["asked"], doc["reached"], doc["outcome"]) == ("modeled", "modeled", "passed")
    service = next(r for r in doc["not_reached"] if r["level"] == "service")
    assert service == {"level": "service", "asked": False, "why": "service not run: --no-service-check",
                       "flag": "drop --no-service-check"}
