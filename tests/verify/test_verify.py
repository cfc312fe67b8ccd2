"""fixer.verify.layers: the layers together, with the environment read from the root's unit."""

from __future__ import annotations

import json

import pytest

from fixer.model.profile import Profile
from fixer.verify.layers import verify
from tests.native import layout

PROFILE = Profile(name="test")


def write_unit(root, environment: dict[str, str]) -> None:
    unit = root / "etc/systemd/system/ollama.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Service]\nExecStart=/usr/local/bin/ollama serve\nUser=root\n")
    dropin = root / "etc/systemd/system/ollama.service.d/zz-test.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\n" + "".join(f'Environment="{k}={v}"\n' for k, v in environment.items()))


@pytest.mark.root
def test_good_host_passes_every_layer(namespaces, make_host):
    root = make_host()
    write_unit(root, layout.use_library_path(root))
    report = verify(str(root), PROFILE, timeout=20, probe=True)
    assert [(c.name, c.status) for c in report.checks] == [
        ("environment", "pass"), ("static", "pass"), ("load", "pass"), ("runner", "pass")], report.to_dict()
    assert report.ok and report.env["LD_LIBRARY_PATH"] == layout.SHIM_DIR
    json.dumps(report.to_dict())


@pytest.mark.parametrize("value, text", [
    ("cuda", "not a subfolder name"),
    ("cuda_v13", "makes Ollama use cuda_v13"),
])
def test_wrong_llm_library(make_host, value, text):
    root = make_host()
    report = verify(str(root), PROFILE, env={"OLLAMA_LLM_LIBRARY": value}, layers=("environment",))
    assert not report.ok and text in report.cause
    assert report.fix == "set service.environment.OLLAMA_LLM_LIBRARY: cuda_v12"


@pytest.mark.root
def test_first_failing_layer_names_the_cause(namespaces, make_host, native):
    root = make_host()
    layout.place(root, f"{layout.SHIM_DIR}/libvgpu-cuda.so", native["cuda-shim-dlopen"])
    write_unit(root, {"LD_PRELOAD": f"{layout.SHIM_DIR}/libvgpu-cuda.so", "OLLAMA_LLM_LIBRARY": "cuda_v12"})
    report = verify(str(root), PROFILE, timeout=20, probe=True)
    status = {c.name: c.status for c in report.checks}
    assert status == {"environment": "pass", "static": "fail", "load": "fail", "runner": "fail"}
    assert "interposes the dynamic loader" in report.cause
    assert "`preload`" in report.fix
