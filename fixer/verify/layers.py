"""Layered proof that the GPU backend loads the way Ollama's discovery will load it; never trusts the plan."""

from __future__ import annotations

import os
from typing import Mapping

from fixer.facts import paths
from fixer.facts.paths import resolve_in_root
from fixer.model.profile import Profile
from fixer.model.proof import Level
from fixer.model.verify import Check, VerifyReport

LAYERS = ("environment", "static", "load", "runner")  # the runner-engine generation's (v0.13-v0.24)
# The layers that execute the root's files (ollama, llama-server, libggml-*.so, preloads), per generation.
PROBES = ("load", "runner", "nvml", "discovery")


def unit_environment(root: str, profile: Profile) -> tuple[dict[str, str], str | None]:
    """The service's effective environment and User= as systemd would load them from the root."""
    unit = _unit(root, profile)
    return unit.environment.effective(), unit.user


def _unit(root: str, profile: Profile):
    from fixer.facts.host import probe_unit

    return probe_unit(root, profile.service.unit, profile.service.scope)


def probe_refusal(root: str, probe: bool | None) -> str | None:
    """Why the probe layers must not run (None: run them). A root other than / is untrusted data: its
    files run only when the operator opts in (--probe), and then only as an unprivileged user in new
    user, PID, network and mount namespaces, which takes root to set up."""
    if probe is None:
        probe = root == "/"
    if not probe:
        return ("--no-probe" if root == "/" else
                "a root other than / is untrusted: its files are executed only with --probe")
    if root != "/" and os.geteuid() != 0:
        return "--probe on a root other than / needs root (to run the probe as an unprivileged user in namespaces)"
    return None


def verify(root: str, profile: Profile, env: Mapping[str, str] | None = None, user: str | None = None,
           layers: tuple[str, ...] | None = None, timeout: float | None = None,
           probe: bool | None = None, progress=None, probe_user: str | None = None) -> VerifyReport:
    """Run the checks in `layers` (default: those of the installed Ollama generation, see
    ollama.detect) in order. `env`/`user` default to what the root's unit gives; then, on a live root
    whose service manager runs, the probes run as transient units of that manager with the unit's
    User=, environment and sandbox settings (see sandbox.systemd_placement). Off the live root the
    probe layers run only with `probe` (the root's code is untrusted; see probe_refusal), and as the
    operator's `probe_user` (default nobody): the unit's User= is reported, never adopted."""
    from fixer.ollama import detect, generations, mlx

    root = os.fspath(root)
    unit = None
    if env is None:
        unit = _unit(root, profile)
        env, user = unit.environment.effective(), user or unit.user
    spec, chosen = _chosen(root, profile.verify)
    spec, tree = install_tree(root, spec, unit)
    installation = detect.detect(root, spec.ollama_bin, spec.ollama_lib, (unit or _unit(root, profile)).working_directory)
    env, mlx_note = mlx.process_env(root, spec.ollama_lib, env, generations.parse_version(installation.version))
    report = VerifyReport(root, profile.name, profile.service.unit, user, dict(env),
                          f"{spec.library}/{spec.backend}", installation=installation.to_dict(),
                          unmodeled=generations.unmodeled(installation.version))
    generation = generations.by_name(installation.generation)
    checks = CHECKS_BY_GENERATION[generation.name](installation)
    refusal = probe_refusal(root, probe)
    runs_as = user
    if root != "/":  # an image's User= names an account of *this* machine: reported, never adopted
        from fixer.probe.placement import PROBE_USER, probe_account

        runs_as = report.probe_user = probe_user or PROBE_USER
        if refusal is None:
            probe_account(runs_as)  # refused (exit 3) before any probe starts
    from fixer.progress import Progress

    chosen_layers = layers or generation.layers
    with (progress or Progress()).task(f"verify {report.backend}", len(chosen_layers)) as step:
        for layer in chosen_layers:
            if layer in PROBES and refusal:
                report.checks.append(Check(layer, "skip", f"not run: {refusal}", flag=_probe_flag(root, refusal)))
                step(f"{layer}: not run")
                continue
            check = checks[layer](root, spec, dict(env), runs_as, timeout, unit)
            if layer == "environment":
                check.evidence[:0] = [line for line in (tree, chosen, mlx_note) if line]
            if layer == "static":
                check.evidence += cache_additions(root, profile) + preload_replacements(check.details)
            report.checks.append(check)
            step(f"{layer}: {check.status}")
    return report


def _probe_flag(root: str, refusal: str) -> str:
    if root == "/":
        return "drop --no-probe"
    return "run as root" if "needs root" in refusal else "--probe"


def _llama_server_checks(installation) -> dict:
    """The v0.30+ layers (fixer.ollama.llama_server), bound to the detected installation."""
    from functools import partial

    from fixer.verify import llama_server_layers as v30

    # Discovery runs Ollama's native probe itself, inside each pass's budget (it counts against the
    # folder's 30 s, v0.32.15 discover/llama_server.go:157): the nvml layer's reading is not reused.
    return {"environment": check_environment, "static": partial(v30.check_static, installation),
            "load": partial(v30.check_load, installation), "nvml": partial(v30.check_nvml, installation),
            "discovery": partial(v30.check_discovery, installation)}


def install_tree(root: str, spec, unit) -> tuple[object, str | None]:
    """The binary the unit's ExecStart= runs and the lib/ollama Ollama derives from its real path
    (v0.32.15 ml/path.go:19-53, v0.24.0 ml/path.go:16-56), in place of the profile's defaults: a distro
    package's /usr/bin/ollama uses /usr/lib/ollama. Unchanged without a unit whose ExecStart= runs an
    `ollama*` binary present in the root."""
    from fixer.facts.systemd import exec_argv
    from fixer.ollama import detect, layout

    argv = exec_argv(unit.exec_start) if unit is not None else []
    binary = argv[0] if argv else ""
    if not binary.startswith("/") or not os.path.basename(binary).startswith("ollama") \
            or resolve_in_root(root, binary) is None:
        return spec, None
    cwd = unit.working_directory
    lib = layout.lib_ollama_path(root, binary, cwd)
    if detect.detect(root, binary, lib, cwd).generation == "runner-engine":
        lib = layout.lib_ollama_path(root, binary, cwd, "runner-engine")
    if (binary, lib) == (spec.ollama_bin, spec.ollama_lib):
        return spec, None
    return (spec.model_copy(update={"ollama_bin": binary, "ollama_lib": lib}),
            f"install tree: ExecStart= runs {binary}, so Ollama uses {lib} (ml/path.go), not the profile's "
            f"{spec.ollama_lib}")


def _chosen(root: str, spec):
    """`library: auto` becomes the folder unpinned Ollama picks for the installed driver, with why."""
    if spec.library != "auto":
        return spec, None
    from fixer.facts.nvidia import chosen_library, nvidia

    facts = nvidia(root)
    library = chosen_library(root, spec.ollama_lib, facts)
    why = f"driver {facts.version}" if facts.version else "no NVIDIA driver version found"
    return spec.model_copy(update={"library": library}), f"library auto: Ollama picks {library} ({why})"


def cache_additions(root: str, profile: Profile) -> list[str]:
    """Every soname the profile's ld.so.conf.d entry adds to the root's ld.so cache (host-wide, for every
    program), read from the real cache."""
    from fixer.facts.ldso import LdCacheError, root_cache

    if profile.ld_so_conf is None or not profile.ld_so_conf.entries:
        return []
    where = f"ld.so cache entries from {profile.ld_so_conf_path}"
    try:
        cache = root_cache(root)
    except (OSError, LdCacheError) as exc:
        return [f"{where}: cache not readable ({getattr(exc, 'strerror', None) or exc})"]
    dirs = {d.rstrip("/") for d in profile.ld_so_conf.entries}
    added = sorted({f"{e.soname} => {e.path}" for e in cache.entries if os.path.dirname(e.path) in dirs})
    return [f"{where}: {', '.join(added) or 'none'}"]


def preload_replacements(details: dict) -> list[str]:
    """For each preloaded object, the library it replaces for the backend (by SONAME), named."""
    out = []
    for obj in details.get("objects", []):
        if obj.get("group") == "preload" and obj.get("soname"):
            out.append(f"preload {obj['path']} (SONAME {obj['soname']}) replaces every other {obj['soname']} "
                       "for the runner, Ollama's bundled copy included")
    return out


def check_environment(root: str, spec, env: dict, user, timeout, unit=None) -> Check:
    """OLLAMA_LLM_LIBRARY must name the library folder verify checks, or Ollama skips it."""
    from fixer.ollama import layout

    folders = layout.library_folders(root, spec.ollama_lib)
    requested = layout.pinned_library(env)
    evidence = [f"library folders under {spec.ollama_lib}: {', '.join(folders) or 'none'}",
                f"OLLAMA_LLM_LIBRARY={env.get('OLLAMA_LLM_LIBRARY', '(unset)')}"]
    if requested is None and env.get("OLLAMA_LLM_LIBRARY"):
        evidence.append("an mlx_* value selects Ollama's MLX engine only: every GPU folder is scanned, as unpinned")
    if spec.library not in folders:
        return Check("environment", "fail", f"{spec.library} is not a library folder", evidence,
                     f"{spec.ollama_lib}/{spec.library} holds no ggml backend: Ollama never scans it",
                     "set verify.library to one of the folders, or reinstall Ollama")
    if requested and requested != spec.library:
        why = ("is not a subfolder name, so every GPU folder is skipped and Ollama uses the CPU"
               if requested not in folders else f"makes Ollama use {requested}, not {spec.library}")
        return Check("environment", "fail", "OLLAMA_LLM_LIBRARY selects another library", evidence,
                     f"OLLAMA_LLM_LIBRARY={requested} {why}",
                     f"set service.environment.OLLAMA_LLM_LIBRARY: {spec.library}")
    others = [f for f in folders if f != spec.library and f.startswith("cuda")]
    if not requested and others:
        evidence.append(f"unpinned: Ollama may prefer {', '.join(others)} when the driver reports a newer CUDA")
    return Check("environment", "pass", f"Ollama will scan {spec.library}", evidence)


def check_static(root: str, spec, env: dict, user, timeout, unit=None) -> Check:
    from fixer.ollama import runner_engine

    res = runner_engine.resolve(root, spec, env)
    if res.ok:
        return Check("static", "pass", f"{len(res.objects)} objects resolve; no missing symbols", res.evidence,
                     details=res.to_dict())
    return Check("static", "fail", "the backend's libraries or symbols do not resolve", res.evidence, res.cause,
                 res.fix, res.to_dict())


def check_load(root: str, spec, env: dict, user, timeout, unit=None) -> Check:
    from fixer.verify.loadprobe import run_load_probe

    if resolve_in_root(root, f"{spec.ollama_lib}/{spec.library}/{spec.backend}") is None:
        return Check("load", "skip", "no backend to load")
    from fixer.ollama.runner_engine import PASS_BUDGET

    # The backend loads inside the runner's first pass: Ollama's budget, not the profile's.
    result = run_load_probe(root, env, spec, user=user, timeout=timeout if timeout is not None else PASS_BUDGET,
                            unit=unit)
    if result.ok:
        return Check("load", "pass", f"{result.device_count} device(s) from {spec.backend}", result.evidence,
                     details=result.to_dict())
    return Check("load", "fail", "the backend does not load or finds too few devices", result.evidence,
                 result.cause, result.fix, result.to_dict())


def check_runner(root: str, spec, env: dict, user, timeout, unit=None) -> Check:
    from fixer.ollama.runner_engine import run_runner_probe

    result = run_runner_probe(root, env, spec, user=user, unit=unit)  # Ollama's budgets, not the profile's
    if result.skipped:
        return Check("runner", "skip", result.cause or "no ollama binary")
    if result.ok:
        return Check("runner", "pass", f"runner reports {len(result.devices)} CUDA device(s), both passes",
                     result.evidence, details=result.to_dict())
    return Check("runner", "fail", "Ollama's runner would not use the GPU", result.evidence, result.cause,
                 result.fix, result.to_dict())


CHECKS = {"environment": check_environment, "static": check_static, "load": check_load, "runner": check_runner}
# Each generation in fixer.ollama.generations -> its layers (name -> check), bound to the installation found.
CHECKS_BY_GENERATION = {"runner-engine": lambda installation: CHECKS, "llama-server": _llama_server_checks}


def check_for_apply(profile: Profile, root: str, probe: bool | None = None, progress=None,
                    restarted=None, service_check: bool = True, service_timeout: float | None = None,
                    model: str | None = None, level: Level | None = None,
                    probe_user: str | None = None) -> VerifyReport:
    """The report `apply` judges after its changes (and again after an automatic rollback). Where the
    run restarted the unit on the live root (`restarted`), the restarted service is checked too and is
    the arbiter; `model` adds the model level; `probe_user`: see verify."""
    report = verify(root, profile, probe=probe, progress=progress, probe_user=probe_user)
    if restarted is not None and service_check:
        add_service_level(report, root, profile, restarted=restarted, timeout=service_timeout, model=model,
                          progress=progress)
    elif restarted is not None or model:
        report.checks.append(Check("service", "skip", "not run: " + (
            "--no-service-check" if not service_check else "this run did not restart the unit on the live root"),
            flag="drop --no-service-check" if not service_check else
            "apply restarts the unit on the live root when its drop-in changes; `verify --service` does"))
    report.asked = level or default_asked(report, service=restarted is not None and service_check, model=model)
    return report


def add_service_level(report: VerifyReport, root: str, profile: Profile, *, restarted=None,
                      timeout: float | None = None, model: str | None = None, progress=None) -> None:
    """Append the service check (and the model check after it) to `report`."""
    from fixer.progress import Progress
    from fixer.verify.model_load import check_after_service
    from fixer.verify.service import check_service

    with (progress or Progress()).task(f"waiting for {profile.service.unit}'s \"inference compute\" line") as step:
        spec, _ = install_tree(root, profile.verify, _unit(root, profile))  # the tree the unit really runs
        serviced = check_service(root, profile, report.env, restarted=restarted, timeout=timeout, echo=step,
                                 spec=spec)
    report.checks.append(serviced)
    if model or serviced.status == "pass":
        report.checks.append(check_after_service(serviced, report.env, model))


def default_asked(report: VerifyReport, *, service: bool, model: str | None) -> Level:
    """The level a run asks for when the operator names none: the model level with a model; the service
    level where the service is checked, or where verify's model does not cover the installed release."""
    if model:
        return Level.MODEL
    if service or report.unmodeled:
        return Level.SERVICE
    return Level.MODELED
