"""Host rules, each on hand-built facts (no files)."""

from __future__ import annotations

import pytest

from fixer.doctor.rules import hardening as sandbox
from fixer.doctor.rules import libs, preload, service
from fixer.doctor.rules.base import Context
from fixer.doctor.snapshot import DropIn, Entry, HostFacts
from fixer.facts.linker import Candidate, Lookup, MissingSymbol, PreloadConflict, Resolution
from tests.doctor.conftest import elf_info

LIB = "/usr/local/lib/ollama"
F = Entry("file", mtime=1000.0)
OVERRIDE = "/etc/systemd/system/ollama.service.d/override.conf"
OURS = "/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf"


def cuda_dir(major: str) -> dict[str, Entry]:
    return {"libggml-cuda.so": F, f"libcudart.so.{major}": Entry("symlink", f"libcudart.so.{major}.8.90", 1000.0),
            f"libcudart.so.{major}.8.90": F, f"libcublas.so.{major}": F, f"libcublasLt.so.{major}": F}


def facts(**kw) -> HostFacts:
    base = dict(
        unit_path="/etc/systemd/system/ollama.service",
        exec_start="/usr/local/bin/ollama serve",
        lib_present=True,
        lib_top={"libggml-base.so.0.0.0": F, "libggml-cpu-haswell.so": F},
        lib_dirs={"cuda_v12": cuda_dir("12"), "cuda_v13": cuda_dir("13")},
    )
    base.update(kw)
    return HostFacts(**base)


def ids(findings) -> list[str]:
    return [f.id for f in findings]


def run(rule, **kw):
    return rule(Context(host=facts(**kw)))


# ---------------------------------------------------------------- service


@pytest.mark.parametrize("value, fires", [("cuda_v12", False), ("cuda_v13", False), ("cuda", True), ("cpu_avx2", True), ("cuda_v11", True)])
def test_llm_library_invalid(value, fires):
    found = run(service.llm_library_invalid, env={"OLLAMA_LLM_LIBRARY": value})
    assert ids(found) == (["llm-library-invalid"] if fires else [])
    if fires:
        assert found[0].fix.setting == "service.environment.OLLAMA_LLM_LIBRARY" and "cuda_v12" in found[0].fix.text


def test_llm_library_checks_folders_that_hold_a_backend():
    # An empty leftover folder named like the value does not count.
    found = run(service.llm_library_invalid, env={"OLLAMA_LLM_LIBRARY": "cuda_v11"}, lib_dirs={"cuda_v11": {}, "cuda_v12": cuda_dir("12")})
    assert ids(found) == ["llm-library-invalid"]


@pytest.mark.parametrize("name, fid", [("OLLAMA_NUM_GPU", "noop-num-gpu"), ("OLLAMA_LIBRARY_PATH", "noop-library-path")])
def test_noop_variables(name, fid):
    found = run(service.noop_variables, env={name: "999"}, env_origin={name: OVERRIDE})
    assert ids(found) == [fid] and found[0].fix.setting == "service.unset" and OVERRIDE in found[0].evidence[0]
    assert run(service.noop_variables, env={"OLLAMA_DEBUG": "1"}) == []


def test_dropin_without_service():
    found = run(service.dropin_without_service, dropins=[DropIn(OVERRIDE, has_service=False), DropIn(OURS)])
    assert ids(found) == ["dropin-without-service"] and OVERRIDE in found[0].summary


def test_our_variable_shadowed_by_later_dropin_is_an_error():
    history = {"OLLAMA_LLM_LIBRARY": [(OURS, "cuda_v12"), ("/etc/systemd/system/ollama.service.d/zzz-local.conf", "cuda")]}
    found = run(service.env_shadowed, env_history=history)
    assert ids(found) == ["env-shadowed"] and found[0].severity == "error"


def test_other_overrides_are_info_and_unset_counts():
    history = {"LD_PRELOAD": [("/etc/a.conf", "/x.so"), (OVERRIDE, None)], "PATH": [("/a", "1"), ("/b", "2")]}
    found = run(service.env_shadowed, env_history=history)
    assert ids(found) == ["env-overridden"] and "unset" in found[0].summary


def test_same_value_twice_is_not_shadowing():
    assert run(service.env_shadowed, env_history={"OLLAMA_LLM_LIBRARY": [(OVERRIDE, "cuda_v12"), (OURS, "cuda_v12")]}) == []


def test_cuda_visible_devices():
    assert ids(run(service.cuda_visible_devices, env={"CUDA_VISIBLE_DEVICES": "0"})) == ["cuda-visible-devices"]
    assert run(service.cuda_visible_devices) == []


@pytest.mark.parametrize(
    "exec_start, origin, expected",
    [
        ("/usr/local/bin/ollama serve", None, None),
        ("-/usr/bin/ollama serve", None, None),
        ("/usr/local/bin/start-ollama.sh", OVERRIDE, "error"),
        ("/bin/bash -c 'LD_PRELOAD=/x ollama serve'", OVERRIDE, "error"),
        ("/usr/local/bin/ollama run llama3", "/etc/systemd/system/ollama.service", "warning"),
    ],
)
def test_exec_start_wrapper(exec_start, origin, expected):
    kw = {"exec_start": exec_start}
    if origin:
        kw["directive_origin"] = {"ExecStart": origin}
    found = run(service.exec_start_wrapper, **kw)
    assert [f.severity for f in found] == ([expected] if expected else [])


def test_snap_is_outside_reach():
    found = run(service.snap_packaged, snap=["/snap/ollama"])
    assert ids(found) == ["snap-ollama"] and found[0].severity == "external" and found[0].fix.setting is None


# ---------------------------------------------------------------- sandbox

SHIMMY = {"env": {"LD_LIBRARY_PATH": "/opt/vgpu/lib"}, "listings": {"/opt/vgpu/lib": {"libvgpu-cuda.so": F}}}
# The sandbox of today's h100-vgpu profile (issue 12 items 4 and 5), run as the ollama user.
GOOD = {
    "LimitMEMLOCK": ["infinity"], "AmbientCapabilities": ["CAP_SYS_ADMIN"],
    "NoNewPrivileges": ["no"], "PrivateDevices": ["no"], "ProtectKernelTunables": ["no"], "User": ["ollama"],
}


def test_sandbox_reference_settings_are_clean():
    assert run(sandbox.sandbox, directives=GOOD, **SHIMMY) == []


@pytest.mark.parametrize(
    "change, fid, setting",
    [
        ({"PrivateDevices": ["yes"]}, "sandbox-privatedevices", "service.directives.PrivateDevices"),
        ({"LimitMEMLOCK": ["64K"]}, "sandbox-limitmemlock", "service.directives.LimitMEMLOCK"),
        ({"AmbientCapabilities": ["CAP_IPC_LOCK"]}, "sandbox-ambientcapabilities", "vars.shim_capabilities"),
        ({"NoNewPrivileges": ["true"]}, "sandbox-nonewprivileges", "service.directives.NoNewPrivileges"),
        ({"ProtectKernelTunables": ["yes"]}, "sandbox-protectkerneltunables", "service.directives.ProtectKernelTunables"),
        # The old profile's ReadWritePaths=/sys/bus/pci/devices/ is named as the no-op it is.
        ({"ReadWritePaths": ["-/sys/bus/pci/devices/"]}, "sandbox-readwritepaths", "service.directives.ProtectKernelTunables"),
    ],
)
def test_sandbox_each_setting(change, fid, setting):
    found = run(sandbox.sandbox, directives={**GOOD, **change}, **SHIMMY)
    assert ids(found) == [fid]
    assert found[0].fix.setting == setting


def test_ambient_capabilities_are_an_opt_in_not_a_warning():
    found = run(sandbox.sandbox, directives={k: v for k, v in GOOD.items() if k != "AmbientCapabilities"}, **SHIMMY)
    assert [(f.id, f.severity) for f in found] == [("sandbox-ambientcapabilities", "info")]
    assert "shim_capabilities=CAP_SYS_ADMIN" in found[0].fix.text


@pytest.mark.parametrize("bounding, flagged", [
    (["CAP_SYS_ADMIN CAP_IPC_LOCK"], True),   # the old profile's setting: narrows a root unit
    (["~CAP_SYS_MODULE"], False),             # removing one capability is not narrowing to a list
])
def test_a_root_units_bounding_set_must_not_be_narrowed(bounding, flagged):
    root_user = {k: v for k, v in GOOD.items() if k not in ("AmbientCapabilities", "User")}
    found = run(sandbox.sandbox, directives={**root_user, "CapabilityBoundingSet": bounding}, **SHIMMY)
    assert ids(found) == (["sandbox-capabilityboundingset"] if flagged else [])


def test_sandbox_ignored_without_shims_and_for_root():
    assert run(sandbox.sandbox, directives={"PrivateDevices": ["yes"]}) == []
    root_user = {k: v for k, v in GOOD.items() if k not in ("AmbientCapabilities", "User")}
    assert run(sandbox.sandbox, directives=root_user, **SHIMMY) == []


# ---------------------------------------------------------------- libs


def test_toplevel_symlink():
    found = run(libs.toplevel_ggml_cuda, lib_top={"libggml-cuda.so": Entry("symlink", "cuda_v12/libggml-cuda.so")})
    assert ids(found) == ["toplevel-ggml-cuda"] and found[0].fix.setting == "symlinks"
    assert run(libs.toplevel_ggml_cuda) == []


@pytest.mark.parametrize(
    "top, sub, evidence",
    [
        ({"libcuda.so.1": F}, {}, "not shipped at the top level by any known Ollama"),
        ({}, {"libcudart.so.12": Entry("symlink", "/opt/vgpu/lib/libvgpu-cudart.so", 1000.0)}, "points outside"),
        ({}, {"libvgpu-cuda.so": F}, "driver or shim library"),
        ({}, {"libcublas.so.12": Entry("file", mtime=1000.0 + 40 * 86400)}, "days after"),
    ],
)
def test_lib_tree_modified(top, sub, evidence):
    lib_dirs = {"cuda_v12": {**cuda_dir("12"), **sub}}
    realpaths = {f"{LIB}/cuda_v12/libcudart.so.12": "/opt/vgpu/lib/libvgpu-cudart.so"} if "libcudart.so.12" in sub else {}
    found = run(libs.lib_tree_modified, lib_top={"libggml-base.so.0.0.0": F, **top}, lib_dirs=lib_dirs, realpaths=realpaths)
    assert ids(found) == ["lib-ollama-modified"] and evidence in " ".join(found[0].evidence)


def test_lib_tree_pristine():
    assert run(libs.lib_tree_modified) == []


V032_TOP = ["llama-server", "llama-quantize", "libggml-base.so.0", "libggml.so.0", "libllama.so.0", "libmtmd.so.0",
            "libggml-cpu-haswell.so", "libggml-cpu-x64.so"]


def test_what_a_v032_release_ships_at_the_top_of_lib_ollama_is_its_own():
    """v0.32.15 llama/server/CMakeLists.txt:516-560: llama-server and its libraries live at the top."""
    top = {name: F for name in V032_TOP}
    assert rule_in(libs.lib_tree_modified, "llama-server", lib_top=top) == []
    assert rule_in(libs.lib_tree_modified, None, lib_top=top) == []  # generation unknown: accuse nothing shipped


def test_llama_server_at_the_top_of_a_runner_engine_tree_was_added_by_hand():
    found = rule_in(libs.lib_tree_modified, "runner-engine", lib_top={"libggml-base.so.0": F, "llama-server": F})
    assert ids(found) == ["lib-ollama-modified"]
    assert found[0].evidence == (f"{LIB}/llama-server: not shipped at the top level by the runner-engine generation "
                                 "of Ollama",)


def rule_in(rule, generation, **kw):
    return rule(Context(host=facts(**kw), generation=generation))


DRIVER = elf_info("/opt/vgpu/lib/libvgpu-cuda.so", "libcuda.so.1", ("cuInit", "dlopen"))
PLAIN_DRIVER = elf_info("/opt/vgpu/lib/libvgpu-cuda.so", "libcuda.so.1", ("cuInit", "cuMemCreate"))
BACKEND = f"{LIB}/cuda_v12/libggml-cuda.so"


def look(name: str, *found: tuple[str, str], real: str | None = None) -> Lookup:
    """A linker lookup: (path, origin) candidates in search order, the first wins; none: not found."""
    if found and found[0][1] == "preload":
        return Lookup(name, found[0][0], "preload")
    cands = [Candidate(p, o, "shadowed" if i else "wins", real=real if i else p) for i, (p, o) in enumerate(found)]
    return Lookup(name, found[0][0] if found else None, found[0][1] if found else "", "", cands)


def bundled(name: str, *after: tuple[str, str], real: str | None = None) -> Lookup:
    return look(name, (f"{LIB}/cuda_v12/{name}", "LD_LIBRARY_PATH"), *after, real=real)


def runner(*lookups: Lookup, missing=(), conflicts=()) -> Resolution:
    """What the gatherer stores from fixer.facts.linker.resolve_backend (see test_runner_facts.py for real trees)."""
    res = Resolution("/", BACKEND, [LIB, f"{LIB}/cuda_v12"], [], "not used (test)")
    res.lookups = {lk.name: lk for lk in lookups}
    res.missing_symbols, res.preload_conflicts = list(missing), list(conflicts)
    return res


@pytest.mark.parametrize("libcuda, fires", [(look("libcuda.so.1"), True), (look("libcuda.so.1", (DRIVER.path, "preload")), False),
                                             (look("libcuda.so.1", ("/opt/vgpu/lib/libcuda.so.1", "ld.so.cache")), False)])
def test_libcuda_resolution(libcuda, fires):
    """Only the linker's answer counts; how it resolves on real trees: test_runner_facts.py."""
    assert ids(run(libs.libcuda_unresolvable, runner=runner(libcuda))) == (["libcuda-unresolvable"] if fires else [])


def test_libcuda_fix_never_advises_the_driver_on_a_shim_host():
    shim = run(libs.libcuda_unresolvable, listings={"/opt/vgpu/lib": {"libvgpu-cuda.so": F}}, env={"LD_LIBRARY_PATH": "/opt/vgpu/lib"},
               runner=runner(look("libcuda.so.1")))
    bare = run(libs.libcuda_unresolvable, runner=runner(look("libcuda.so.1")))
    assert "driver" not in shim[0].fix.text.lower().replace("driver shim", "") and shim[0].fix.setting == "library_path"
    assert "NVIDIA driver" in bare[0].fix.text


@pytest.mark.parametrize(
    "path, soname, fires",
    [
        ("/opt/vgpu/lib/libvgpu-cuda.so", "libvgpu-cuda.so", True),
        ("/opt/vgpu/lib/libvgpu-cuda.so", "libcuda.so.1", False),
        ("/opt/vgpu/lib/libvgpu-nvml.so", None, True),
        ("/opt/vgpu/lib/libvgpu-cudart.so", "libcudart.so.12", False),
    ],
)
def test_shim_soname(path, soname, fires):
    found = run(libs.shim_soname, env={"LD_PRELOAD": path}, elf={path: elf_info(path, soname)})
    assert ids(found) == (["shim-soname"] if fires else [])


def test_shim_missing_exports():
    libcuda = look("libcuda.so.1", (DRIVER.path, "preload"))
    unbound = [MissingSymbol("cuMemCreate", None, None, BACKEND, None), MissingSymbol("cudaMalloc", None, None, BACKEND, None),
               MissingSymbol("cublasCreate_v2", None, None, BACKEND, None)]
    found = run(libs.shim_missing_exports, env={"LD_PRELOAD": DRIVER.path}, runner=runner(libcuda, missing=unbound))
    assert ids(found) == ["shim-missing-exports"] and "cuMemCreate" in found[0].evidence[0]
    assert "cudaMalloc" not in found[0].evidence[0] and found[0].fix.setting is None
    assert run(libs.shim_missing_exports, env={"LD_PRELOAD": DRIVER.path}, runner=runner(libcuda, missing=unbound[1:])) == []
    # Without a libcuda.so.1 at all, libcuda-unresolvable speaks, not this rule.
    assert run(libs.shim_missing_exports, runner=runner(look("libcuda.so.1"), missing=unbound)) == []


def test_cudart_replaced():
    sub = {**cuda_dir("12"), "libcudart.so.12": Entry("symlink", "/opt/vgpu/lib/libvgpu-cudart.so")}
    found = run(libs.cudart_replaced, lib_dirs={"cuda_v12": sub}, realpaths={f"{LIB}/cuda_v12/libcudart.so.12": "/opt/vgpu/lib/libvgpu-cudart.so"})
    assert ids(found) == ["cudart-replaced"] and found[0].fix.setting is None
    missing = {k: v for k, v in cuda_dir("12").items() if k != "libcudart.so.12"}
    assert ids(run(libs.cudart_replaced, lib_dirs={"cuda_v12": missing})) == ["cudart-replaced"]
    assert run(libs.cudart_replaced) == []


def test_shadowing_via_top_level_and_preload():
    stray = look("libcublas.so.12", (f"{LIB}/libcublas.so.12", "LD_LIBRARY_PATH"), (f"{LIB}/cuda_v12/libcublas.so.12", "LD_LIBRARY_PATH"))
    top = run(libs.shim_shadows_bundled, lib_top={"libcublas.so.12": F}, runner=runner(stray))
    assert ids(top) == ["shim-shadows-bundled"] and top[0].severity == "error" and top[0].fix.setting == "files"
    rt = elf_info("/opt/vgpu/lib/libvgpu-cudart.so", "libcudart.so.12")
    pre = run(libs.shim_shadows_bundled, env={"LD_PRELOAD": rt.path}, elf={rt.path: rt},
              runner=runner(look("libcudart.so.12", (rt.path, "preload"))))
    assert ids(pre) == ["shim-shadows-bundled"] and pre[0].fix.setting == "preload"


def test_shim_named_cublas_on_the_library_path_is_a_warning():
    cublas = bundled("libcublas.so.12", ("/opt/vgpu/lib/libcublas.so.12", "LD_LIBRARY_PATH"), real="/opt/vgpu/lib/libvgpu-cublas.so")
    found = run(libs.shim_shadows_bundled, env={"LD_LIBRARY_PATH": "/opt/vgpu/lib"}, runner=runner(cublas))
    assert [(f.id, f.severity) for f in found] == [("shim-shadows-bundled", "warning")]


def test_bundled_copy_wins_without_shadowing():
    plain = runner(*(bundled(n) for n in ("libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12")))
    assert run(libs.shim_shadows_bundled, env={"LD_LIBRARY_PATH": "/usr/lib"}, runner=plain) == []


# ---------------------------------------------------------------- preload


def test_preload_missing():
    found = run(preload.preload_missing, env={"LD_PRELOAD": "/opt/a.so:/opt/b.so"}, exists={"/opt/a.so": True, "/opt/b.so": False})
    assert ids(found) == ["preload-missing"] and "/opt/b.so" in found[0].evidence[0] and found[0].fix.setting == "preload"


def test_preload_interposing_dlopen():
    found = run(preload.preload_interposes_dlopen, env={"LD_PRELOAD": DRIVER.path}, elf={DRIVER.path: DRIVER})
    assert ids(found) == ["preload-interposes-dlopen"] and found[0].fix.setting == "preload"
    assert run(preload.preload_interposes_dlopen, env={"LD_PRELOAD": DRIVER.path}, elf={DRIVER.path: PLAIN_DRIVER}) == []
    system_wide = run(preload.preload_interposes_dlopen, ld_so_preload=[DRIVER.path], elf={DRIVER.path: DRIVER})
    assert system_wide[0].fix.setting == "ld_so_preload.remove"


def test_preload_order():
    rt = "/opt/vgpu/lib/libvgpu-cudart.so"
    lost = PreloadConflict(rt, "libcudart.so.12", PLAIN_DRIVER.path, "libcuda.so.1", ["cuInit"])
    wrong = run(preload.preload_order, env={"LD_PRELOAD": f"{rt} {PLAIN_DRIVER.path}"}, runner=runner(conflicts=[lost]))
    assert ids(wrong) == ["preload-order"] and "cuInit" in wrong[0].evidence[1]
    right = run(preload.preload_order, env={"LD_PRELOAD": f"{PLAIN_DRIVER.path}:{rt}"}, runner=runner())
    assert right == []


@pytest.mark.parametrize(
    "lines, exists, expected",
    [
        (["/opt/vgpu/lib/libvgpu-cuda.so"], {}, ["ld-so-preload-shim"]),
        (["/usr/lib/libfoo.so"], {"/usr/lib/libfoo.so": False}, ["ld-so-preload-missing"]),
        (["/usr/lib/libfoo.so"], {"/usr/lib/libfoo.so": True}, []),
        (["/opt/vgpu/lib/libvgpu-cuda.so", "/gone.so"], {"/gone.so": False}, ["ld-so-preload-shim", "ld-so-preload-missing"]),
    ],
)
def test_ld_so_preload(lines, exists, expected):
    found = run(preload.ld_so_preload, ld_so_preload=lines, exists=exists)
    assert ids(found) == expected and all(f.fix.setting == "ld_so_preload.remove" for f in found)
