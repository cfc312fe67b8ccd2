"""Pure: evidence -> the shipped profile and every variable, each citing the evidence line it came from;
or why no shipped profile can fix the host."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from fixer.fix.evidence import Evidence

SHIM, PRELOAD, CUDA13, PASSTHROUGH = "h100-vgpu", "h100-vgpu-preload", "h100-vgpu-cuda13", "passthrough-gpu"
CUDA13_DRIVER = 13000  # cuDriverGetVersion of a CUDA 13 driver


@dataclass(frozen=True)
class Choice:
    name: str  # "profile" or a variable of it
    value: str
    because: str  # id of the evidence line
    line: str  # that line

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "evidence": self.because, "line": self.line}


@dataclass
class Decision:
    profile: str | None = None
    choices: list[Choice] = field(default_factory=list)
    cannot_fix: list[str] = field(default_factory=list)  # why no shipped profile can fix the host
    scope: str = "system"

    @property
    def variables(self) -> dict[str, str]:
        return {c.name: c.value for c in self.choices if c.name != "profile"}

    def record(self) -> dict:
        """What the generation keeps of the choice: enough to load the same profile again."""
        return {"profile": self.profile, "variables": self.variables, "scope": self.scope}

    def to_dict(self) -> dict:
        return {"profile": self.profile, "variables": self.variables, "scope": self.scope,
                "choices": [c.to_dict() for c in self.choices], "cannot_fix": list(self.cannot_fix)}


def choose(ev: Evidence, limits: Mapping[str, tuple[str, ...]]) -> Decision:
    """The profile and variables for the host `ev` describes. `limits`: each shipped profile's
    `cannot_fix` list, quoted where that profile is the one that cannot help."""
    decision = Decision(scope=ev.scope)

    def pick(name: str, value: str, because: str) -> None:
        decision.choices.append(Choice(name, value, because, ev.lines.get(because, "")))

    def refuse(why: str, because: str, profile: str | None = None, about: str = "") -> Decision:
        """Why nothing can fix the host, citing its evidence line and the entry of `profile`'s own
        `cannot_fix` list that mentions `about`."""
        decision.cannot_fix.append(f"{why} [{because}: {ev.lines.get(because, '')}]")
        quoted = next((entry for entry in limits.get(profile or "", ()) if about and about in entry), None)
        if quoted is not None:
            decision.cannot_fix.append(f"{profile} cannot fix: {quoted}")
        decision.choices.clear()
        return decision

    for finding in ev.external:
        refuse(f"outside the guest: {finding['summary']}", f"external:{finding['id']}")
    if decision.cannot_fix:
        return decision
    if not ev.folders:
        return refuse("Ollama ships no CUDA backend here (no cuda_v* folder with a ggml backend): a CPU-only "
                      "install or none at all", "folders")
    if ev.nvidia_present:
        decision.profile = PASSTHROUGH
        pick("profile", PASSTHROUGH, "nvidia")
        _install_tree(pick, ev)
        pick("cuda_library", ev.unpinned_folder or "auto", "choice")  # the profile unpins: Ollama's own pick
        return decision
    driver = ev.shim_for("driver")
    if driver is None:
        return refuse("no NVIDIA driver, and no file in the shim directories exports the CUDA driver API: "
                      "there is nothing for a profile to link libcuda.so.1 to", "shim:driver", PASSTHROUGH, "NVIDIA driver")
    if ev.pci_readable and not ev.gpus:
        return refuse("no para-virtual NVIDIA device on this guest's PCI bus", "pci", SHIM, "para-virtual")
    shim_dir = os.path.dirname(driver.path)
    number, because, why = _cuda_major(ev, shim_dir)
    if number is None:
        return refuse(why, because, CUDA13, "12.x driver")
    profile = PRELOAD if (driver.interposes and not driver.hooks_loader) else (CUDA13 if number == "13" else SHIM)
    decision.profile = profile
    pick("profile", profile, because if profile == CUDA13 else "interposes" if driver.interposes else "shim:driver")
    _install_tree(pick, ev)
    pick("shim_dir", shim_dir, "shim:driver")
    pick("cuda_shim", os.path.basename(driver.path), "shim:driver")
    runtime = ev.shim_for("runtime", shim_dir)
    if runtime is not None:
        pick("cudart_shim", os.path.basename(runtime.path), "shim:runtime")
    nvml = ev.shim_for("nvml", shim_dir)
    if nvml is not None:
        pick("nvml_shim", os.path.basename(nvml.path), "shim:nvml")
    pick("nvml_link", _nvml_link(ev, nvml is not None), "installation" if nvml is not None else "shim:nvml")
    pick("cuda_major", number, because)
    pick("cuda_library", f"cuda_v{number}", because)
    if ev.gpus:
        pick("pci_vendor", ev.gpus[0]["vendor"], "pci")
        pick("pci_device", ev.gpus[0]["device"], "pci")
    if ev.group:
        pick("ollama_group", ev.group, "group")
    return decision


def with_overrides(decision: Decision, overrides: Mapping[str, str]) -> Decision:
    """The decision with the operator's --set values in place of what was chosen (they win)."""
    kept = [c for c in decision.choices if c.name not in overrides]
    given = [Choice(name, value, "operator", f"--set {name}={value}") for name, value in overrides.items()]
    return Decision(decision.profile, kept + given, list(decision.cannot_fix), decision.scope)


def _install_tree(pick, ev: Evidence) -> None:
    pick("ollama_bin", ev.ollama_bin, "installation")
    pick("ollama_lib", ev.ollama_lib, "installation")


def _cuda_major(ev: Evidence, shim_dir: str) -> tuple[str | None, str, str]:
    """("12" or "13", the id of the evidence line that decides it, ""), or (None, that id, why no CUDA
    folder shipped can run on this shim). cuda_v12 wherever the driver can run it (its cubins cover
    compute 9.0; cuda_v13 is PTX only); cuda_v13 for a CUDA-13-only shim (a CUDA 13 runtime shim and a
    driver that does not say 12.x) or where it is the only folder shipped."""
    read = "versions" if ev.driver_version is not None else "log"
    reported = ev.driver_version if ev.driver_version is not None else (
        ev.logged_driver * 1000 if ev.logged_driver else None)
    runtime = ev.shim_for("runtime", shim_dir)
    runtime_13 = runtime is not None and runtime.runtime_major == "13"
    has12, has13 = "cuda_v12" in ev.folders, "cuda_v13" in ev.folders
    below13 = reported is not None and reported < CUDA13_DRIVER
    if has13 and runtime_13 and not below13:
        return "13", "shim:runtime", ""
    if has12:
        return "12", read if below13 else "folders", ""
    if has13 and not below13:
        return "13", "folders", ""
    if has13:
        return None, read, (f"only cuda_v13 is shipped and the shim's driver reports {reported}: Ollama's cuda_v13 "
                            "runtime refuses a 12.x driver")
    return None, "folders", "no CUDA folder that this shim's driver can run is shipped"


def _nvml_link(ev: Evidence, have_nvml: bool) -> str:
    """No NVML shim, no link; else the rule `apply` follows for `nvml_link: auto` (host_defaults): absent on
    v0.30+, whose only NVML reader is the cuda_v12 driver gate, present on the runner engine."""
    from fixer.ollama.host_defaults import nvml_link_for

    return nvml_link_for(str(ev.installation.get("generation")))[0] if have_nvml else "absent"
