"""`make bench`: vgpu-fix's four performance rows (now against target) and the 10k/50k-path scale rows.

Each row is a median over several interleaved pairs (the machine is shared and noisy: read medians, not
single runs). Rows:
  rollback    rollback of a generation with 10,000 links / apply of the same links   (target <= 1.0)
  start-up    cold `plan` on the seed host / a no-op typer app with plan's options   (target <= 1.25)
  converged   converged `apply` / the same changes as a 7-task Ansible play (local)  (target <= 0.05)
  verify      `verify --probe` (modeled) on a v0.32 layout - Ollama's own two
              llama-server runs on it (--list-devices; start to system_info)          (target <= +0.3 s)
  scale       plan, apply, converged apply, history and rollback of 10,000 and 50,000 links
Exit 1 when a target is missed. `--rows` picks rows; the verify row needs VGPU_FIX_LLAMA_SERVER (the
llama.cpp build `make test` makes) and gcc.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fixer.demo import build_seed_host  # noqa: E402

PY = sys.executable
# An installed tool runs from byte-code (pip compiles wheels at install time); let the warm-up runs write
# it for an editable checkout too. Any non-empty PYTHONDONTWRITEBYTECODE would disable writing.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "NO_COLOR": "1"}
TOOL = [PY, "-m", "fixer"]


def timed(argv: list[str], env: dict | None = None, cwd: str | None = None, codes=(0, 4)) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child and its children) of one run; exits when the run failed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or ENV, cwd=cwd, check=False)
    if proc.returncode not in codes:
        sys.exit(f"bench: {' '.join(argv)[:300]} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')[-2000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def must(argv: list[str], env: dict | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env or ENV)
    if proc.returncode not in (0, 4):
        sys.exit(f"bench: {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def median(values: list[float]) -> float:
    return statistics.median(values)


class Table:
    def __init__(self) -> None:
        self.missed: list[str] = []

    def row(self, name: str, now: str, target: str, ok: bool | None, note: str = "") -> None:
        mark = "" if ok is None else ("ok" if ok else "MISSED")
        print(f"{name:<34} {now:<34} {target:<16} {mark:<7} {note}", flush=True)
        if ok is False:
            self.missed.append(name)


# ------------------------------------------------------------------ scale: many links in one directory


def scale_root(base: str, links: int) -> tuple[str, str]:
    root = tempfile.mkdtemp(prefix=f"scale{links}-", dir=base)
    os.makedirs(f"{root}/opt/t")
    os.makedirs(f"{root}/var/lib")
    Path(f"{root}/opt/t/target.so").write_text("x")
    profile = f"{base}/scale{links}.yaml"
    with open(profile, "w") as fh:
        fh.write(f"name: scale{links}\nsymlinks:\n")
        fh.writelines(f"  - {{path: /opt/links/l{i:06d}.so, target: /opt/t/target.so}}\n" for i in range(links))
    return root, profile


def drive(step: str, root: str, links: int) -> None:
    """`plan` or `apply --no-verify` of `links` links through fixer.core in this process: a profile file
    holds at most 1 MiB and 100,000 YAML nodes (profiles.py), so 50,000 links cannot come from a file."""
    from fixer import core
    from fixer.model.profile import Profile

    profile = Profile.model_validate({"name": f"scale{links}", "symlinks": [
        {"path": f"/opt/links/l{i:06d}.so", "target": "/opt/t/target.so"} for i in range(links)]})
    if step == "plan":
        core.make_plan(profile, root)
    else:
        core.apply(profile, root, verify=False)


def scale_run(base: str, links: int, from_file: bool = True) -> dict[str, float]:
    """Seconds of plan, apply, converged apply, history and rollback on a fresh root; plan and apply from
    the profile file through the CLI, or (`from_file` False) through `drive`."""
    root, profile = scale_root(base, links)
    seconds = {}

    def changing(step: str) -> list[str]:
        if from_file:
            return TOOL + (["plan", "-p", profile] if step == "plan" else ["apply", "--no-verify", "-p", profile])
        return [PY, __file__, "--drive", step, root, str(links)]

    for step, argv in (("plan", changing("plan")), ("apply", changing("apply")),
                       ("converged apply", changing("apply")), ("history", TOOL + ["history"]),
                       ("rollback", TOOL + ["rollback"])):
        if argv[:len(TOOL)] == TOOL:
            argv = argv + ["--root", root]
        seconds[step] = timed(argv)[0]
    if os.path.lexists(f"{root}/opt/links/l000000.so"):
        sys.exit(f"bench: the rollback of {links} links left them in place")
    shutil.rmtree(root)
    return seconds


def rows_rollback(table: Table, base: str, pairs: int) -> None:
    ratios, applies, rollbacks = [], [], []
    for _ in range(pairs):
        s = scale_run(base, 10_000)
        applies.append(s["apply"])
        rollbacks.append(s["rollback"])
        ratios.append(s["rollback"] / s["apply"])
    r = median(ratios)
    table.row("rollback / apply, 10,000 links", f"{r:.2f}x ({median(rollbacks):.1f} s / {median(applies):.1f} s)",
              "<= 1.00x", r <= 1.0, f"median of {pairs}")


def rows_scale(table: Table, base: str) -> None:
    for links, from_file in ((10_000, True), (10_000, False), (50_000, False)):
        s = scale_run(base, links, from_file)
        how = "CLI, profile file" if from_file else "plan/apply via fixer.core"
        table.row(f"scale {links:,} links ({how})", " ".join(f"{k} {v:.1f}s" for k, v in s.items()), "linear", None)


# ------------------------------------------------------------------ start-up


NOOP_APP = str(REPO / "scripts" / "noop_plan_app.py")


def rows_startup(table: Table, base: str, pairs: int) -> None:
    root = tempfile.mkdtemp(prefix="seed-", dir=base)
    build_seed_host(root)
    floor_cmd = [PY, NOOP_APP, "plan", "--root", root]
    plan_cmd = TOOL + ["plan", "--root", root]
    for _ in range(3):  # warm the page cache and write byte-code for both
        timed(floor_cmd)
        timed(plan_cmd)
    runs = [(timed(floor_cmd), timed(plan_cmd)) for _ in range(pairs)]
    wall = median([p[0] / f[0] for f, p in runs])
    cpu = median([p[1] / f[1] for f, p in runs])
    f_ms, p_ms = median([f[0] for f, _ in runs]) * 1000, median([p[0] for _, p in runs]) * 1000
    table.row("plan cold / no-op typer app", f"{wall:.2f}x wall ({p_ms:.0f}/{f_ms:.0f} ms), {cpu:.2f}x CPU",
              "<= 1.25x", wall <= 1.25, f"median of {pairs} pairs")


# ------------------------------------------------------------------ converged apply against Ansible


def play_for(root: str) -> list[dict]:
    """The seed host's h100-vgpu changes as seven ansible.builtin tasks (the converged host is the source)."""
    def at(path: str) -> str:
        return f"{root}{path}"

    links = [("/opt/vgpu/lib/libcuda.so.1", "libvgpu-cuda.so"), ("/opt/vgpu/lib/libnvidia-ml.so.1", "libvgpu-nvml.so"),
             ("/usr/local/lib/vgpu-fix/libcuda.so.1", f"{root}/opt/vgpu/lib/libvgpu-cuda.so"),
             ("/usr/local/lib/vgpu-fix/libnvidia-ml.so.1", f"{root}/opt/vgpu/lib/libvgpu-nvml.so")]
    files = ["/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf", "/etc/ld.so.conf.d/vgpu-fix.conf",
             "/etc/udev/rules.d/70-vgpu-fix.rules"]
    tasks = [{"name": "links", "ansible.builtin.file": {"path": "{{ item.0 }}", "src": "{{ item.1 }}",
                                                        "state": "link", "follow": False, "force": True},
              "loop": [[at(p), t] for p, t in links]},
             {"name": "no top-level backend", "ansible.builtin.file": {
                 "path": at("/usr/local/lib/ollama/libggml-cuda.so"), "state": "absent"}},
             {"name": "no shim cuBLAS", "ansible.builtin.file": {"path": "{{ item }}", "state": "absent"},
              "loop": [at("/opt/vgpu/lib/libcublas.so.12"), at("/opt/vgpu/lib/libcublasLt.so.12")]}]
    tasks += [{"name": os.path.basename(p), "ansible.builtin.copy": {
        "content": Path(at(p)).read_text(), "dest": at(p), "mode": "0644"}} for p in files]
    tasks.append({"name": "ld.so.preload", "ansible.builtin.copy": {"content": "", "dest": at("/etc/ld.so.preload"),
                                                                     "mode": "0644"}})
    return tasks


def rows_converged(table: Table, base: str, pairs: int) -> None:
    playbook = shutil.which("ansible-playbook", path=str(Path(PY).parent)) or shutil.which("ansible-playbook")
    if playbook is None:
        table.row("converged apply / Ansible play", "ansible-playbook not found (make venv)", "<= 0.05x", False)
        return
    root = tempfile.mkdtemp(prefix="converged-", dir=base)
    build_seed_host(root)
    must(TOOL + ["apply", "--no-verify", "--root", root])
    # The absolute in-root link targets vgpu-fix writes point at "/opt/...": give Ansible the same text.
    tasks = play_for(root)
    for item in tasks[0]["loop"]:
        item[1] = os.readlink(item[0])
    work = Path(tempfile.mkdtemp(prefix="ansible-", dir=base))
    (work / "play.yml").write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    (work / "inventory").write_text(f"localhost ansible_connection=local ansible_python_interpreter={PY}\n")
    env = {**ENV, "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_NOCOLOR": "true", "ANSIBLE_RETRY_FILES_ENABLED": "false",
           "ANSIBLE_GALAXY_SERVER": "http://127.0.0.1:9"}
    ansible_cmd = [playbook, "-i", str(work / "inventory"), str(work / "play.yml")]
    check = subprocess.run(ansible_cmd, env=env, cwd=work, capture_output=True, text=True)
    if check.returncode != 0 or "changed=0" not in check.stdout or "ok=7" not in check.stdout:
        sys.exit(f"bench: the Ansible play is not converged on the converged host:\n{check.stdout[-3000:]}")
    apply_cmd = TOOL + ["apply", "--no-verify", "--root", root]  # like the play: no verify (converged: none runs)
    timed(apply_cmd)
    runs = [(timed(ansible_cmd, env, str(work)), timed(apply_cmd)) for _ in range(pairs)]
    ratio = median([a[0] / p[0] for p, a in runs])
    table.row("converged apply / 7-task Ansible play",
              f"{ratio:.3f}x ({median([a[0] for _, a in runs]) * 1000:.0f} / "
              f"{median([p[0] for p, _ in runs]) * 1000:.0f} ms)", "<= 0.05x", ratio <= 0.05, f"median of {pairs} pairs")


# ------------------------------------------------------------------ verify --probe against Ollama's own runs


def llama_server_dir() -> Path | None:
    value = os.environ.get("VGPU_FIX_LLAMA_SERVER") or str(REPO / ".cache" / "llama-server")
    folder = Path(value) if Path(value).is_dir() else Path(value).parent
    return folder if (folder / "llama-server").is_file() else None


def ollama_runs(root: str, env: dict) -> float:
    """What Ollama v0.32.15 itself runs per CUDA folder (discover/llama_server.go:58-155): llama-server
    started until its `system_info:` line, then `--list-devices`; seconds for both."""
    lib = f"{root}/usr/local/lib/ollama"
    start = time.perf_counter()
    proc = subprocess.Popen([f"{lib}/llama-server", "--port", "39217", "--host", "127.0.0.1", "--no-webui",
                             "--offline", "--verbose"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = b""
    for line in proc.stderr:
        seen += line
        if b"system_info:" in line:
            break
    proc.kill()
    proc.wait()
    subprocess.run([f"{lib}/llama-server", "--list-devices", "--offline", "--verbose"], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if b"system_info:" not in seen:
        sys.exit("bench: llama-server never printed system_info:\n" + seen.decode(errors="replace")[-2000:])
    return time.perf_counter() - start


def rows_verify(table: Table, base: str, pairs: int) -> None:
    server = llama_server_dir()
    if server is None:
        table.row("verify --probe - Ollama's runs", "no llama-server build (make llama-server)", "<= +0.30 s", False)
        return
    from tests.native import layout
    from tests.native.build import build_native
    from tests.verify.test_apply_verify_cli import with_seed_unit

    native = build_native(Path(base) / "native")
    root = Path(tempfile.mkdtemp(prefix="v032-", dir=base))
    layout.lay_out_v030(root, native, server / "llama-server")
    with_seed_unit(root)
    must(TOOL + ["apply", "--no-verify", "--root", str(root)])
    lib = f"{root}/usr/local/lib/ollama"
    run_env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": f"{lib}:{lib}/cuda_v12:{root}/opt/vgpu/lib",
               "GGML_BACKEND_PATH": f"{lib}/cuda_v12/libggml-cuda.so"}
    verify_cmd = TOOL + ["verify", "--probe", "--root", str(root), "--json"]
    check = subprocess.run(verify_cmd, capture_output=True, text=True, env=ENV)
    level = json.loads(check.stdout).get("verify", {}).get("level_reached") if check.stdout.startswith("{") else None
    ollama_runs(str(root), run_env)
    runs = [(ollama_runs(str(root), run_env), timed(verify_cmd)[0]) for _ in range(pairs)]
    extra = median([v - o for o, v in runs])
    table.row("verify --probe - Ollama's 2 runs", f"+{extra:.2f} s ({median([v for _, v in runs]):.2f} s / "
              f"{median([o for o, _ in runs]):.2f} s)", "<= +0.30 s", extra <= 0.3,
              f"median of {pairs} pairs; exit {check.returncode}, level {level}")


ROWS = {"rollback": rows_rollback, "startup": rows_startup, "converged": rows_converged, "verify": rows_verify,
        "scale": rows_scale}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--pairs", type=int, default=7, help="interleaved pairs per row (rollback: a third)")
    parser.add_argument("--drive", nargs=3, metavar=("STEP", "ROOT", "LINKS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive(args.drive[0], args.drive[1], int(args.drive[2]))
        return 0
    base = tempfile.mkdtemp(prefix="vgpu-bench-")
    table = Table()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians of interleaved pairs (noisy machine)")
    print(f"{'measure':<34} {'now':<34} {'target':<16}")
    try:
        for name in args.rows.split(","):
            if name == "scale":
                rows_scale(table, base)
            elif name == "rollback":
                rows_rollback(table, base, max(1, args.pairs // 3))
            else:
                ROWS[name](table, base, args.pairs)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if table.missed:
        print("missed: " + ", ".join(table.missed))
    return 1 if table.missed else 0


if __name__ == "__main__":
    sys.exit(main())
