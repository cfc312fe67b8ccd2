"""verify held against a REAL Ollama: each host of the matrix is started with the real `ollama serve`
(VGPU_FIX_REAL_OLLAMA, a binary built by hand from ollama/ollama at a tag, never part of this repository)
on a root laid out like a v0.32 install (lib/ollama from the project's real llama-server build,
VGPU_FIX_LLAMA_SERVER, and the gcc-built CUDA/NVML fakes of tests/native). Its "inference compute"
lines are the truth; verify's verdict on the same root must match them. Where they disagreed, the model
was wrong and was fixed (the Ollama line each fix follows is cited where the fix is)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fixer import profiles
from fixer.facts.systemd import quote_assignment
from fixer.verify import layers
from tests.native import layout, real_ollama
from tests.verify.test_llama_server_real import llama_server  # noqa: F401  (the real llama-server build)

pytestmark = pytest.mark.usefixtures("namespaces")


@pytest.fixture(scope="module")
def ollama_binary(tmp_path_factory) -> Path:
    path = os.environ.get(real_ollama.VARIABLE)
    if not path:
        pytest.skip(f"{real_ollama.VARIABLE} is not set: no real ollama binary to hold verify against "
                    "(build `ollama` from ollama/ollama at a tag, outside this repository, and name it there)")
    binary = Path(path)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"{real_ollama.VARIABLE}={path}: not an executable file")
    said = subprocess.run([str(binary), "-v"], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path_factory.mktemp("home")),
                               "OLLAMA_HOST": "127.0.0.1:9"})
    if "client version is 0.3" not in said.stdout + said.stderr:
        pytest.fail(f"{real_ollama.VARIABLE}={path}: not an Ollama v0.30+ binary: {(said.stdout + said.stderr)[-300:]}")
    return binary


@dataclass(frozen=True)
class Host:
    """One host of the matrix and what the real Ollama v0.32.15 did on it."""

    name: str
    ollama: str  # the real Ollama's verdict: "CUDA libdirs=ollama,<folder>" or "cpu"
    shim: str = "cuda-shim"
    nvml: str = "nvml-shim"
    preload: bool = False  # shims preloaded by path (else: libcuda.so.1 / libnvidia-ml.so.1 links on the path)
    pin: str | None = "cuda_v12"  # OLLAMA_LLM_LIBRARY
    env: dict[str, str] = field(default_factory=dict)
    prefix: str = "/usr/local"  # where the package put bin/ollama and lib/ollama
    mlx: bool = False  # an mlx_cuda_v13 folder with its libmlxc.so


HOSTS = [
    Host("good shim", "CUDA libdirs=ollama,cuda_v12"),
    Host("partial shim (no cuDeviceGet)", "cpu", shim="cuda-shim-partial"),
    Host("wrong SONAME, preloaded", "cpu", shim="cuda-shim-wrong-soname", preload=True),
    Host("NVML reports 12.9 (driver gate)", "cpu", nvml="nvml-shim-12.9"),
    Host("compute capability 8.7, not in ARCHS", "cpu", env={"FAKE_CUDA_CC": "8.7"}),
    Host("12 s per CUDA init", "cpu", shim="cuda-shim-slow"),
    Host("shim crashes every process at exit", "cpu", shim="cuda-shim-crash-at-exit"),
    Host("unpinned, cuda_v12 and cuda_v13, driver 12.4", "CUDA libdirs=ollama,cuda_v12", pin=None),
    Host("unpinned, cuda_v12 and cuda_v13, driver 13.0", "CUDA libdirs=ollama,cuda_v13", pin=None,
         shim="cuda-shim-13000"),
    Host("/usr/bin/ollama with /usr/lib/ollama", "CUDA libdirs=ollama,cuda_v12", prefix="/usr"),
    Host("shim interposes dlopen only in ollama* processes", "CUDA libdirs=ollama,cuda_v12",
         shim="cuda-shim-dlopen", preload=True),
    Host("OLLAMA_LLM_LIBRARY=mlx_cuda_v13 with an mlx folder", "CUDA libdirs=ollama,cuda_v12",
         pin="mlx_cuda_v13", mlx=True),
]


def lay_out(root: Path, host: Host, native, server: Path, binary: Path) -> dict[str, str]:
    """The host's files and its unit (ExecStart= and Environment=); returns the unit's environment."""
    ollama_bin, ollama_lib = f"{host.prefix}/bin/ollama", f"{host.prefix}/lib/ollama"
    layout.lay_out_v030(root, native, server, shim=host.shim, nvml=host.nvml, ollama_lib=ollama_lib,
                        ollama_bin=ollama_bin)
    layout.place(root, ollama_bin, binary).chmod(0o755)
    if host.mlx:
        layout.place(root, f"{ollama_lib}/mlx_cuda_v13/libmlxc.so", native["mlxc"])
    env = layout.use_preload(root) if host.preload else layout.use_library_path(root)
    env.pop("OLLAMA_LLM_LIBRARY")
    env.update(({"OLLAMA_LLM_LIBRARY": host.pin} if host.pin else {}), **host.env)
    unit = root / "etc/systemd/system/ollama.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Unit]\nDescription=Ollama Service\n\n[Service]\n"
                    f"ExecStart={ollama_bin} serve\n"
                    + "".join(f"Environment={quote_assignment(k, v)}\n" for k, v in env.items())
                    + "\n[Install]\nWantedBy=multi-user.target\n")
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    return env


def verify_verdict(root: Path) -> tuple[str, dict]:
    """verify's verdict in the real Ollama's terms: CUDA with the folder its discovery model keeps, cpu
    when it fails, or "not proven" with the level it reached."""
    report = layers.verify(str(root), profiles.load("h100-vgpu", str(root)), probe=True).to_dict()
    if report["outcome"] == "failed":
        return "cpu", report
    if report["outcome"] != "passed":
        return f"not proven (reached {report['reached']})", report
    discovery = next(c for c in report["checks"] if c["name"] == "discovery")
    return f"CUDA libdirs=ollama,{discovery['details']['folder'].rsplit('/', 1)[-1]}", report


@pytest.mark.parametrize("host", HOSTS, ids=[h.name for h in HOSTS])
def test_verify_agrees_with_the_real_ollama(host, tmp_path, native, llama_server, ollama_binary):  # noqa: F811
    env = lay_out(tmp_path, host, native, llama_server, ollama_binary)
    real = real_ollama.serve(tmp_path, f"{host.prefix}/bin/ollama", f"{host.prefix}/lib/ollama", env)
    said = real.library + (f" libdirs={real.libdirs}" if real.library == "CUDA" else "")
    assert said == host.ollama, f"the real Ollama: {real.computes}\n{real.log[-6000:]}"
    verdict, report = verify_verdict(tmp_path)
    print(f"\nagreement | {host.name} | real Ollama: {said} | verify: {verdict}, level {report['reached']}")
    checks = {c["name"]: (c["status"], c.get("cause")) for c in report["checks"]}
    evidence = next(c["evidence"] for c in report["checks"] if c["name"] == "discovery")
    assert verdict == host.ollama, f"verify: {checks}\n{evidence}\nthe real Ollama: {real.computes}"
    if said.startswith("CUDA"):  # off the live root the model is the highest level (service needs the live unit)
        assert report["reached"] == "modeled", report["not_reached"]
