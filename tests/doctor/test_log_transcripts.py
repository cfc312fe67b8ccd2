"""Transcripts of every discovery outcome Ollama logs, v0.24 to v0.33-rc: the version, generation and findings doctor reads.

Each transcript in tests/doctor/logs/ says in its header which Ollama tag and source lines (file:line) it
follows; its lines are built from the source's own message strings in Go's slog text format.
"""

from __future__ import annotations

import pytest

from fixer.doctor.verdict import diagnose
from fixer.ollama.logs import summarize
from tests.doctor.conftest import LOGS, read_log

RUNNER, SERVER = "runner-engine", "llama-server"

# transcript, version text, generation, finding ids (in verdict order), phrases the first finding's text must hold
CASES = [
    ("v0.32.15_nvml_driver_too_old.log", "Ollama 0.32.15", SERVER, ["nvidia-driver-gate"],
     ["NVML driver gate", "driver major 12", "libnvidia-ml.so.1", "could not verify NVIDIA driver compatibility"]),
    ("v0.32.15_nvml_unverified_gpu_ok.log", "Ollama 0.32.15", SERVER, ["nvidia-driver-unverified"],
     ["gate was skipped"]),
    ("v0.30.0_old_gpu_driver_too_old.txt", "Ollama 0.30.0", SERVER, ["nvidia-driver-gate"],
     ["535", "570 or newer"]),
    ("v0.32.15_arch_not_compiled.log", "Ollama 0.32.15", SERVER, ["cuda-arch-not-compiled"],
     ["compute 8.7", "cuda_v12", "ARCHS"]),
    ("v0.32.15_watchdog_timeout.log", "Ollama 0.32.15", SERVER, ["discovery-timeout"],
     ["llama-server hung", "system_info"]),
    ("v0.32.15_igpu_dropped.log", "Ollama 0.32.15", SERVER, ["integrated-gpu-dropped"],
     ["OLLAMA_IGPU_ENABLE=1"]),
    ("v0.30.11_list_devices_crashed.json", "Ollama 0.30.11", SERVER, ["llama-server-discovery-failed"],
     ["crashed", "killed by a signal", "CUDA error: initialization error"]),
    ("v0.32.15_invalid_pin_debug.log", "Ollama 0.32.15", SERVER, ["llm-library-invalid"],
     ["OLLAMA_LLM_LIBRARY=cuda", "skipping available library"]),
    ("v0.24.0_invalid_pin.log", "Ollama 0.24.0", RUNNER, ["llm-library-invalid", "cpu-fallback-no-debug"],
     ["OLLAMA_LLM_LIBRARY=cuda", "server config"]),
    ("v0.24.0_runner_crashed.log", "Ollama 0.24.0", RUNNER, ["runner-crashed-in-init"],
     ["loaded and then crashed", "not a backend that never loaded", "CUDA error: initialization error"]),
    ("v0.33.0-rc2_gpu_ok.log", "Ollama 0.33.0-rc2", SERVER, [], []),
]


def _text(finding) -> str:
    return " ".join([finding.summary, finding.explanation, finding.fix.text, *finding.evidence])


@pytest.mark.parametrize("name, version, generation, ids, phrases", CASES, ids=[c[0] for c in CASES])
def test_transcript_diagnosis(name, version, generation, ids, phrases):
    text = read_log(name)
    log = summarize(text)
    assert log.version.describe() == version and not log.version.unmatched
    assert log.generation == generation
    found = [f for f in diagnose("/nonexistent-root", text, probe_host=False).findings
             if f.id != "profile-cannot-fix"]  # about the suggested profile, not what the log shows
    assert [f.id for f in found] == ids
    for phrase in phrases:
        assert phrase in _text(found[0])


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("v0.*")))
def test_every_transcript_names_its_tag_and_lines(name):
    header = [line for line in read_log(name).splitlines() if line.startswith("#")]
    assert header and name.split("_")[0].lstrip("v") in header[0] and ".go:" in " ".join(header)


def test_every_transcript_is_a_case():
    assert {p.name for p in LOGS.glob("v0.*")} == {c[0] for c in CASES}


def test_nvml_gate_is_never_backend_never_loaded_even_with_debug_bootstraps():
    """With OLLAMA_DEBUG=1 the gated folder also has a fast bootstrap line, the old signature of a silent load failure."""
    boot = ('time=2026-08-20T09:00:01.340+02:00 level=DEBUG source=runner.go:494 msg="bootstrap discovery took" '
            'duration=1.2s OLLAMA_LIBRARY_PATH="[/usr/local/lib/ollama /usr/local/lib/ollama/cuda_v12]" extra_envs=map[]')
    lines = read_log("v0.32.15_nvml_driver_too_old.log").splitlines()
    text = "\n".join(lines[:-1] + [boot, lines[-1]])
    ids = [f.id for f in diagnose("/nonexistent-root", text, probe_host=False).findings]
    assert ids[0] == "nvidia-driver-gate" and "backend-never-loaded" not in ids


def _server_config(name: str) -> str:
    """The transcript's `server config` line as a patched build would log it (a source line no release has)."""
    line = next(x for x in read_log(name).splitlines() if x.startswith("time=") and "server config" in x)
    return line.replace("source=routes.go:", "source=routes.go:9")


def test_generation_from_server_config_keys_when_the_version_is_unknown():
    log = summarize(_server_config("v0.32.15_nvml_driver_too_old.log"))
    assert not log.version.known
    assert (log.generation, log.generation_evidence) == (SERVER, "server config has LLAMA_ARG_FIT (v0.30.0+)")
    assert summarize(_server_config("v0.24.0_invalid_pin.log")).generation == RUNNER


def test_generation_from_a_message_only_one_generation_logs():
    line = ('time=2026-08-20T09:00:01Z level=WARN source=x.go:1 msg="NVIDIA driver too old" device=X compute=9.0 '
            'driver=12 required_driver="550 or newer"')
    log = summarize(line)
    assert log.generation == SERVER and log.driver_too_old[0].data["driver_major"] == 12


def test_the_nvml_gate_is_named_from_its_log_line_alone():
    line = next(x for x in read_log("v0.32.15_nvml_driver_too_old.log").splitlines() if "driver too old" in x)
    diagnosis = diagnose("/nonexistent-root", line, probe_host=False)
    found = diagnosis.findings[0]
    assert (found.id, found.severity) == ("nvidia-driver-gate", "error") and "NVML driver gate" in found.summary
    # v0.32.15 native_probe_linux.go:392-417 + cuda_compat.go:37-41: no NVML -> a warning, the GPU kept;
    # so the profile setting that unlinks the NVML shim is the fix, in the finding and the verdict alike
    assert found.fix.setting == "vars.nvml_link=absent" and "--set nvml_link=absent" in found.fix.text
    assert "run `vgpu-fix plan --profile h100-vgpu --set nvml_link=absent`" in diagnosis.verdict
    assert "cannot fix" not in diagnosis.verdict


def test_runner_engine_rules_are_not_applied_to_a_llama_server_log():
    """A crash in a llama-server log is named by the llama-server rule, never as an `ollama runner` crash."""
    found = diagnose("/nonexistent-root", read_log("v0.30.11_list_devices_crashed.json"), probe_host=False).findings
    assert "runner-crashed-in-init" not in [f.id for f in found]
    assert "ollama runner" not in " ".join(_text(f) for f in found)


def test_llama_server_rules_are_not_applied_to_a_runner_engine_log():
    line = ('time=2026-05-02T10:10:00Z level=WARN source=cuda_compat.go:65 msg="NVIDIA driver too old" device=X '
            'compute=9.0 driver=12 required_driver="550 or newer"')
    text = read_log("v0.24.0_runner_crashed.log") + line + "\n"
    ids = [f.id for f in diagnose("/nonexistent-root", text, probe_host=False).findings]
    assert "nvidia-driver-gate" not in ids and "runner-crashed-in-init" in ids


def test_summary_json_names_the_filters_and_the_generation():
    events = summarize(read_log("v0.32.15_nvml_driver_too_old.log")).to_dict()
    assert events["generation"] == SERVER
    assert events["dropped"]["nvidia_driver"][0]["required_driver"] == "550 or newer"
    assert events["version"]["generation"] == SERVER


def test_text_report_names_version_and_generation():
    from fixer.render import doctor_text as render_text

    text = render_text(diagnose("/nonexistent-root", read_log("v0.33.0-rc2_gpu_ok.log"), probe_host=False))
    assert "log: Ollama 0.33.0-rc2, llama-server generation" in text and "verdict: GPU in use: NVIDIA H200" in text


def _own_lines(name: str) -> list[str]:
    return [line for line in read_log(name).splitlines() if line.strip() and not line.startswith("#")]


def _journal_json(line: str, n: int) -> str:
    import json

    return json.dumps({"MESSAGE": line, "_SYSTEMD_UNIT": "ollama.service", "SYSLOG_IDENTIFIER": "ollama",
                       "_PID": "812", "__REALTIME_TIMESTAMP": str(1795000000000000 + n * 1000)})


# How people capture Ollama's log before pasting it (Ollama's issue tracker): each wraps Ollama's own lines.
CAPTURES = {
    "docker compose logs": lambda line, n: f"llms-ollama-1  | {line}",
    "docker logs --timestamps": lambda line, n: f"2026-11-20T14:02:{n % 60:02d}.101234567Z {line}",
    "docker compose logs --timestamps": lambda line, n: f"llms-ollama-1  | 2026-11-20T14:02:{n % 60:02d}.101234567Z {line}",
    "kubectl logs --timestamps": lambda line, n: f"2026-11-20T14:02:{n % 60:02d}.101234567+00:00 {line}",
    "kubectl logs --prefix": lambda line, n: f"[pod/ollama-7d9f/ollama] {line}",
    "journalctl -o cat": lambda line, n: line,
    "journalctl -o json": _journal_json,
}


@pytest.mark.parametrize("capture", sorted(CAPTURES))
@pytest.mark.parametrize("name, first", [("v0.32.15_nvml_driver_too_old.log", "nvidia-driver-gate"),
                                         ("v0.32.15_watchdog_timeout.log", "discovery-timeout")])
def test_the_findings_survive_every_common_capture_format(capture, name, first):
    wrap = CAPTURES[capture]
    lines = [wrap(line, n) for n, line in enumerate(_own_lines(name))]
    if capture.startswith("docker compose"):  # another service of the project, interleaved
        lines[1:1] = ["llms-webui-1   | INFO:     Started server process [1]", "llms-webui-1   | "]
    plain = diagnose("/nonexistent-root", "\n".join(_own_lines(name)), probe_host=False)
    wrapped = diagnose("/nonexistent-root", "\n".join(lines), probe_host=False)
    assert [f.id for f in wrapped.findings] == [f.id for f in plain.findings] and wrapped.findings[0].id == first
    assert wrapped.verdict == plain.verdict
    assert "log-not-ollama" not in [f.id for f in wrapped.findings]


@pytest.mark.parametrize("text", ["", "Nov 20 14:02:11 host sshd[42]: Accepted publickey for root\n",
                                  "web-1  | GET / 200\nweb-1  | GET /favicon.ico 404\n", "just some notes\n"])
def test_a_log_without_one_ollama_line_says_so(text):
    diagnosis = diagnose("/nonexistent-root", text, probe_host=False)
    found = {f.id: f for f in diagnosis.findings}
    assert "log-not-ollama" in found and found["log-not-ollama"].severity == "warning"
    assert diagnosis.verdict != "No problem found."
