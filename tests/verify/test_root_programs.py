"""A root's programs are read with a cap and their ends named for what they are: a llama-server that floods
its output, hangs, cannot be executed or crashes (the two runs of v0.32.15 discover/llama_server.go:58-65
and :143-155; a non-zero or abnormal end of `--list-devices` yields no devices there, :146-155).

llama-server here is a stand-in shell script, on purpose: these are the behaviours of a broken program."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fixer.probe.capture import json_objects
from tests.native import layout

pytestmark = pytest.mark.usefixtures("namespaces")
SERVER = f"{layout.OLLAMA_LIB}/llama-server"
# Runs verify's discovery layer in a fresh interpreter and reports its cause and that interpreter's peak RSS.
DRIVER = textwrap.dedent("""
    import json, resource, sys
    from fixer import profiles
    from fixer.verify import layers
    root, env = sys.argv[1], json.loads(sys.argv[3])
    profile = profiles.load("h100-vgpu", root, {"nvml_link": "present"})
    report = layers.verify(root, profile, env=env, layers=("discovery",),
                           timeout=float(sys.argv[2]), probe=True).to_dict()
    check = report["checks"][0]
    print(json.dumps({"status": check["status"], "cause": check.get("cause"),
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
""")


def _discover(root, timeout: float = 20) -> dict:
    env = json.dumps(layout.use_library_path(root))
    done = subprocess.run([sys.executable, "-c", DRIVER, str(root), str(timeout), env], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture
def with_server(tmp_path, native):
    def make(script: str, mode: int = 0o755):
        root = layout.lay_out_v030(tmp_path / "root", native)
        path = root / SERVER.lstrip("/")
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(mode)
        return root

    return make


def test_a_flood_of_output_is_capped(with_server):
    """400 MB on each stream (the issue's host drove vgpu-fix to 1.2 GB RSS): read, counted, not kept."""
    root = with_server('yes "flooding the pipe with text" | head -c 400000000 >&2\n'
                       'yes "flooding the pipe with text" | head -c 400000000\n')
    found = _discover(root, timeout=60)
    assert found["status"] == "fail"
    assert "lists no CUDA device" in found["cause"], found
    assert found["maxrss_kib"] < 200 * 1024, found


@pytest.mark.parametrize("script,mode,said", [
    ("exec sleep 600\n", 0o755, "llama-server start-up run hung: no end within 30 s, killed"),  # Ollama's budget
    ("exit 0\n", 0o644, "llama-server start-up run could not be executed: exec /usr/local/lib/ollama/llama-server"),
    ('kill -SEGV $$\n', 0o755, "llama-server start-up run crashed (SIGSEGV)"),
    ('case "$1" in --list-devices) kill -ABRT $$;; esac\necho "system_info: CUDA : ARCHS = 900" >&2\n', 0o755,
     "llama-server --list-devices crashed (SIGABRT)"),
    ('case "$1" in --list-devices) exit 3;; esac\necho "system_info: CUDA : ARCHS = 900" >&2\n', 0o755,
     "llama-server --list-devices exited with status 3"),
])
def test_each_end_is_reported_as_what_it_is(with_server, script, mode, said):
    found = _discover(with_server(script, mode), timeout=3)
    assert found["status"] == "fail"
    assert found["cause"].startswith(said), found
    if mode == 0o644:
        assert "Permission denied" in found["cause"]


def test_only_json_objects_are_read_from_a_programs_output():
    """`ollama gpu-discover` printing a list, a string or a number first is not an object to read."""
    text = '[1, 2]\n"devices"\n7\nnot json\n{"devices": [{"library": "CUDA"}]}\n{"second": true}\n'
    assert json_objects(text) == [{"devices": [{"library": "CUDA"}]}, {"second": True}]
