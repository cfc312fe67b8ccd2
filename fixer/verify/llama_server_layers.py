"""verify's layers for Ollama v0.30+ (llama-server generation): static, load, NVML gate, discovery."""

from __future__ import annotations

from fixer.facts.linker import resolve_in_root
from fixer.ollama import llama_server as ls
from fixer.ollama.generations import parse_version
from fixer.model.verify import Check


def _server(installation, spec) -> str:
    return installation.llama_server or f"{spec.ollama_lib}/llama-server"


def _env(installation, root: str, spec, env: dict) -> dict:
    """llama-server's environment as discovery gives it (GGML_BACKEND_PATH by Ollama's sorted-glob rule)."""
    folder = f"{spec.ollama_lib}/{spec.library}"
    return ls.server_env(env, _server(installation, spec), spec.ollama_lib, folder, ls.backend_file(root, folder))


def check_static(installation, root: str, spec, env: dict, user, timeout, unit=None) -> Check:
    """llama-server's NEEDED and the backend's, with the library path Ollama composes for llama-server."""
    server = _server(installation, spec)
    if resolve_in_root(root, server) is None:
        return Check("static", "fail", "no llama-server", [f"{server} not found"],
                     f"Ollama {installation.version or 'v0.30+'} finds GPUs only through {server}",
                     "reinstall Ollama (install.sh puts llama-server into lib/ollama)")
    own, backend = ls.resolve(root, spec, env, server)
    path = ":".join(backend.library_path)
    evidence = [f"LD_LIBRARY_PATH={path} (Ollama: llama-server's dir, {spec.library}, the unit's)",
                f"GGML_BACKEND_PATH={backend.backend}"]
    evidence += [f"llama-server: {line}" for line in own.evidence] + backend.evidence
    details = {"llama_server": own.to_dict(), "backend": backend.to_dict()}
    failed = next((r for r in (own, backend) if not r.ok), None)
    if failed is None:
        return Check("static", "pass", f"llama-server and {spec.backend}: {len(own.objects) + len(backend.objects)} "
                     "objects resolve; no missing symbols", evidence, details=details)
    what = "llama-server's" if failed is own else "the backend's"
    return Check("static", "fail", f"{what} libraries or symbols do not resolve", evidence, failed.cause,
                 failed.fix, details)


def check_load(installation, root: str, spec, env: dict, user, timeout, unit=None) -> Check:
    from fixer.verify.loadprobe import run_load_probe

    if resolve_in_root(root, f"{spec.ollama_lib}/{spec.library}/{spec.backend}") is None:
        return Check("load", "skip", "no backend to load")
    # Since v0.30 the backend is loaded, and CUDA initialised, inside llama-server (v0.32.15
    # discover/llama_server.go:59-69): a shim that interposes only in `ollama*` processes stays out.
    # Within the folder's budget (ls.FOLDER_BUDGET), not the profile's.
    result = run_load_probe(root, env, spec, user=user, timeout=timeout if timeout is not None else ls.FOLDER_BUDGET,
                            unit=unit, child_env=_env(installation, root, spec, env), process="llama-server")
    if result.ok:
        return Check("load", "pass", f"{result.device_count} device(s) from {spec.backend} with llama-server's "
                     "environment", result.evidence, details=result.to_dict())
    return Check("load", "fail", "the backend does not load or finds too few devices", result.evidence,
                 result.cause, result.fix, result.to_dict())


def check_nvml(installation, root: str, spec, env: dict, user, timeout, unit=None) -> Check:
    """The cuda_v12 driver gate (cuda_compat.go) fed as Ollama feeds it: the driver major from the root's
    own `ollama gpu-discover` (ls.gpu_discover); vgpu-fix's own NVML reading only says which library
    answered what, for the fix."""
    folder = f"{spec.ollama_lib}/{spec.library}"
    child_env = _env(installation, root, spec, env)
    probed = ls.gpu_discover(root, child_env, spec, user, ls.NATIVE_PROBE_CAP, unit)
    reading = ls.read_native(root, child_env, spec, user, timeout or spec.timeout, unit)
    runtime = ls.cuda_runtime(root, [spec.ollama_lib, folder])
    evidence = [probed.line, reading.line.replace("native probe:", "vgpu-fix's own reading:", 1),
                f"CUDA runtime {'%d.%d' % runtime if runtime else 'unknown'} (libcudart.so.* names in {spec.library})"]
    details = {"native": probed.__dict__, "reading": reading.__dict__, "runtime": list(runtime) if runtime else None}
    if probed.error:  # cuda_compat.go:37-41: no major, so only a warning; the device is kept
        return Check("nvml", "pass", "Ollama's native probe failed, so its driver gate only warns and keeps the GPU",
                     evidence, details=details)
    devices = [ls.Device(str(d["index"]), f"CUDA{d['index']}", "", 1, 1, "CUDA",
                         f"{d.get('compute_major', 0)}.{d.get('compute_minor', 0)}")
               for d in (probed.cuda or {}).get("devices", [])]
    if not devices:
        return Check("nvml", "skip", "ollama gpu-discover reports no CUDA device: nothing for the driver gate to judge",
                     evidence, details=details)
    if spec.library != "cuda_v12":
        return Check("nvml", "pass", f"the driver gate applies only to cuda_v12, not {spec.library}", evidence,
                     details=details)
    warning = ls.driver_gate(devices, folder, probed.driver_major, runtime, parse_version(installation.version))
    dropped = [d for d in devices if d.dropped_by]
    if dropped:
        return Check("nvml", "fail", "Ollama's NVIDIA driver gate drops the GPU (cuda_compat.go)", evidence,
                     f"NVIDIA driver gate: {dropped[0].detail}: Ollama {installation.version or 'v0.30.11+'} drops "
                     f"every {spec.library} device and uses the CPU", ls.gate_fix(reading), details)
    summary = f"Ollama only warns: {warning}" if warning else f"driver {probed.driver_major} passes the gate"
    return Check("nvml", "pass", summary, evidence, details=details)


def check_discovery(installation, root: str, spec, env: dict, user, timeout, unit=None) -> Check:
    """Discovery as Ollama runs it: the pinned folder, or unpinned every CUDA folder, keeping the one
    Ollama keeps (see ls.kept_folder)."""
    from fixer.ollama import layout

    scanned = [f for f in layout.scanned_folders(root, spec.ollama_lib, env) if f.startswith("cuda_v")]
    folders = [spec.library] if layout.pinned_library(env) else scanned or [spec.library]
    results = [ls.run_discovery(root, env, spec.model_copy(update={"library": f}), installation, user=user,
                                unit=unit) for f in folders]
    result = ls.kept_folder(results)
    others = [r for r in results if r is not result]
    evidence = result.evidence
    if others:
        evidence.insert(0, f"unpinned: Ollama scans {', '.join(folders)} and keeps "
                           f"{result.folder.rsplit('/', 1)[-1]} (discover/runner.go:438-486)")
        evidence += [f"{r.folder.rsplit('/', 1)[-1]}: {len(r.survivors)} CUDA device(s) survive"
                     + (f" ({r.cause})" if r.cause else "") for r in others]
    if result.ok:
        names = ", ".join(f"{d.index} {d.description}" for d in result.survivors)
        return Check("discovery", "pass", f"{result.server}: {len(result.survivors)} CUDA device(s) survive every "
                     f"filter ({names})", evidence, details=result.to_dict())
    return Check("discovery", "fail", "Ollama's llama-server discovery would not use the GPU", evidence,
                 result.cause, result.fix, result.to_dict())
