"""Parsing Ollama logs in all three formats into records, events and a summary."""

from __future__ import annotations

import json

import pytest

from fixer.ollama import logs as L
from tests.doctor.conftest import read_log

SLOG = ('time=2026-02-26T04:45:48.892-05:00 level=DEBUG source=runner.go:437 msg="bootstrap discovery took" '
        'duration=228.959725ms OLLAMA_LIBRARY_PATH="[/usr/local/lib/ollama /usr/local/lib/ollama/cuda_v12]"')


@pytest.mark.parametrize(
    "text, expected",
    [
        ('a=1 b="two words" c=', {"a": "1", "b": "two words", "c": ""}),
        (r'msg="say \"hi\"" path="C:\\x"', {"msg": 'say "hi"', "path": "C:\\x"}),
        ('msg="unterminated value', {"msg": "unterminated value"}),
        ("flag k=v", {"flag": "", "k": "v"}),
        ('e="\\u00b5s\\n"', {"e": "µs\n"}),
    ],
)
def test_parse_logfmt(text, expected):
    assert L.parse_logfmt(text) == expected


@pytest.mark.parametrize(
    "text, seconds",
    [("228.959725ms", 0.228959725), ("30.004517s", 30.004517), ("1m0.5s", 60.5), ("850µs", 0.00085), ("2h", 7200.0), ("soon", None), ("", None)],
)
def test_parse_go_duration(text, seconds):
    assert L.parse_go_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_go_list_and_map():
    assert L.parse_go_list("[/a /b]") == ["/a", "/b"]
    assert L.parse_go_map("map[CUDA_VISIBLE_DEVICES:GPU-1 GGML_CUDA_INIT:1]") == {"CUDA_VISIBLE_DEVICES": "GPU-1", "GGML_CUDA_INIT": "1"}
    assert L.parse_go_map("map[OLLAMA_ORIGINS:[http://a http://b] X:]") == {"OLLAMA_ORIGINS": "[http://a http://b]", "X": ""}
    assert L.parse_go_map("map[]") == {}


def test_slog_record_fields():
    (rec,) = L.records(SLOG)
    assert (rec.level, rec.source, rec.msg) == ("DEBUG", "runner.go:437", "bootstrap discovery took")
    assert rec.attrs["OLLAMA_LIBRARY_PATH"] == "[/usr/local/lib/ollama /usr/local/lib/ollama/cuda_v12]"
    assert rec.time is not None and rec.time.utcoffset().total_seconds() == -5 * 3600


def test_wrapped_records_are_joined_as_in_the_seed():
    recs = L.records(read_log("seed_current.log"))
    assert [r.msg for r in recs] == ["bootstrap discovery took", "evaluating which, if any, devices to filter out", "inference compute"]
    assert recs[0].attrs["duration"] == "228.959725ms"
    assert recs[2].attrs == {"id": "cpu", "library": "cpu"}


def test_wrapped_inside_a_quoted_value():
    text = 'time=2026-01-01T00:00:00Z level=INFO source=types.go:42 msg="inference compute" description="NVIDIA H100\n80GB HBM3" id=GPU-1 library=CUDA'
    (rec,) = L.records(text)
    assert rec.attrs["description"] == "NVIDIA H100 80GB HBM3" and rec.attrs["library"] == "CUDA"


def test_complete_record_not_joined_with_a_following_plain_line():
    text = SLOG + "\nggml_cuda_init: found 1 CUDA devices:"
    assert [e.kind for e in L.events(text)] == ["bootstrap", "cuda_init"]


def test_journal_text_prefix_and_foreign_services_dropped():
    text = ("Feb 26 04:45:48 vm ollama[1234]: " + SLOG + "\n"
            "Feb 26 04:45:49 vm sshd[99]: Accepted publickey for root\n"
            "  continuation of the sshd line that wrapped\n"
            "Feb 26 04:45:49 vm CRON[7]: (root) CMD (run-parts)\n")
    recs = L.records(text)
    assert len(recs) == 1 and recs[0].pid == "1234" and recs[0].msg == "bootstrap discovery took"


def test_wrapper_identifier_kept_when_the_line_is_ollamas():
    text = "Feb 26 04:45:48 vm start-ollama.sh[1234]: " + SLOG
    assert [e.kind for e in L.events(text)] == ["bootstrap"]


def test_journal_json_string_bytes_and_foreign():
    lines = [
        json.dumps({"__REALTIME_TIMESTAMP": "1772099148892000", "_PID": "1", "SYSLOG_IDENTIFIER": "ollama", "MESSAGE": SLOG}),
        json.dumps({"SYSLOG_IDENTIFIER": "ollama", "MESSAGE": list(b"ggml_cuda_init: found 2 CUDA devices:\x1b")}),
        json.dumps({"SYSLOG_IDENTIFIER": "kernel", "MESSAGE": "usb 1-1: new device"}),
        json.dumps({"SYSLOG_IDENTIFIER": "ollama", "MESSAGE": None}),
    ]
    evts = L.events("\n".join(lines))
    assert [e.kind for e in evts] == ["bootstrap", "cuda_init"]
    assert evts[1].data["count"] == "2"


def test_journal_json_transcript_with_truncated_last_line():
    s = L.summarize(read_log("filtered_second_pass.json"))
    assert s.version.exact == "0.20.2"
    assert len(s.verifying) == 2 and len(s.filtered) == 2
    assert s.failures[0].data["crashed"] is True
    assert s.overrides[0].data["variables"] == {"CUDA_VISIBLE_DEVICES": "0"}
    assert s.cpu_fallback and s.initial_count == 2


def test_gpu_transcript_in_journal_text():
    s = L.summarize(read_log("gpu_ok_journal.txt"))
    assert not s.cpu_fallback
    (gpu,) = s.gpu_devices
    assert gpu.data["libdirs"] == "ollama,cuda_v12" and gpu.data["driver"] == "13.0" and gpu.data["compute"] == "9.0"
    assert [e.data["name"] for e in s.backend_loaded] == ["CPU", "CUDA"]
    assert s.cuda_init[0].data["count"] == "1"
    assert s.server_env["OLLAMA_LLM_LIBRARY"] == "cuda_v12"
    # the second-pass bootstrap (with extra_envs) is not a first-pass GPU bootstrap
    assert len(s.bootstraps) == 2 and len(s.gpu_bootstraps()) == 1
    assert s.discovery_seconds == pytest.approx(1.47)


def test_timeout_transcript_and_preload_error_before_start():
    s = L.summarize(read_log("timeout_preload.log"))
    assert s.failures[0].data["timeout"] is True
    assert s.bootstraps[0].data["seconds"] == pytest.approx(30.004517)
    assert s.preload_ignored[0].data == {"path": "/opt/vgpu/lib/libvgpu-nvml.so", "origin": "LD_PRELOAD", "error": "cannot open shared object file"}
    assert s.gaps and s.gaps[0][2] == pytest.approx(30.005, abs=0.01)


@pytest.mark.parametrize(
    "line, kind, data",
    [
        ("load_backend: loaded CUDA backend from /usr/local/lib/ollama/cuda_v12/libggml-cuda.so", "backend_loaded",
         {"name": "CUDA", "path": "/usr/local/lib/ollama/cuda_v12/libggml-cuda.so"}),
        ("load_backend: failed to load /x/libggml-cuda.so: libcuda.so.1: cannot open shared object file", "backend_load_failed",
         {"path": "/x/libggml-cuda.so", "error": "libcuda.so.1: cannot open shared object file"}),
        ("ggml_cuda_init: failed to initialize CUDA: CUDA driver version is insufficient for CUDA runtime version", "cuda_init_failed",
         {"api": "CUDA", "error": "CUDA driver version is insufficient for CUDA runtime version"}),
        ("  Device 0: NVIDIA H100 80GB HBM3, compute capability 9.0, VMM: yes, ID: GPU-1", "cuda_device",
         {"index": "0", "name": "NVIDIA H100 80GB HBM3", "compute": "9.0", "vmm": "yes", "id": "GPU-1"}),
        ("/usr/local/bin/ollama: symbol lookup error: /opt/vgpu/lib/libvgpu-cuda.so: undefined symbol: cuMemCreate", "symbol_error",
         {"lib": "/opt/vgpu/lib/libvgpu-cuda.so", "symbol": "cuMemCreate"}),
        ("ollama: error while loading shared libraries: libcuda.so.1: cannot open shared object file: No such file or directory",
         "library_missing", {"lib": "libcuda.so.1", "error": "cannot open shared object file: No such file or directory"}),
        ("load_tensors: offloaded 0/29 layers to GPU", "layers_offloaded", {"layers": "0", "total": "29"}),
        ("SIGSEGV: segmentation violation", "runner_crash", {}),
    ],
)
def test_plain_lines(line, kind, data):
    (event,) = L.events(line)
    assert event.kind == kind and event.data == data


@pytest.mark.parametrize(
    "msg, kind",
    [
        ('msg="llama runner started in 8.01 seconds"', "runner_ready"),
        ('msg="error loading llama server" error="llama runner process has terminated: exit status 2"', "runner_exit"),
        ('msg="load failed" error="timed out waiting for llama runner to start - progress 0.00 - "', "load_timeout"),
        ('msg="filtering device which didn\'t fully initialize" id=GPU-1 libdir=/l/cuda_v12 pci_id=0:0 library=CUDA', "device_filtered"),
    ],
)
def test_slog_kinds(msg, kind):
    evts = L.events(f"time=2026-01-01T00:00:00Z level=INFO source=x.go:1 {msg}")
    assert kind in [e.kind for e in evts]


def test_noise_and_partial_lines_produce_no_events():
    text = "random text\n{not json\n```\n## Heading\ntime=\nlevel=INFO msg=half"
    assert L.events(text) == []


def test_latest_session_after_restart():
    old = 'time=2026-01-01T00:00:00Z level=INFO source=routes.go:1663 msg="server config" env="map[]"\n' \
          'time=2026-01-01T00:00:01Z level=INFO source=types.go:42 msg="inference compute" id=GPU-1 library=CUDA libdirs=ollama,cuda_v12\n'
    new = 'time=2026-01-02T00:00:00Z level=INFO source=routes.go:1663 msg="server config" env="map[]"\n' \
          'time=2026-01-02T00:00:01Z level=INFO source=types.go:60 msg="inference compute" id=cpu library=cpu\n'
    s = L.summarize(old + new)
    assert s.sessions == 2 and s.cpu_fallback


def test_whole_seed_document_takes_the_latest_day():
    from tests.conftest import seed_file

    s = L.summarize(open(seed_file("000_303130775b8e87ec.txt")).read())
    assert s.cpu_fallback and not s.verifying and s.initial_count == 0
