"""One door to the root: no module outside fixer/facts/ reads the file system with `os`, `open`, `glob`
or `pathlib` itself, except the functions listed here, each of which touches no path of a root."""

from __future__ import annotations

import ast
from pathlib import Path

FIXER = Path(__file__).resolve().parents[2] / "fixer"
# Calls that reach the file system by name (os.open included: a dir_fd walk is the writer's job).
FS_CALLS = {
    "open", "os.open", "os.listdir", "os.scandir", "os.walk", "os.stat", "os.lstat", "os.readlink", "os.access",
    "os.path.exists", "os.path.lexists", "os.path.isdir", "os.path.isfile", "os.path.islink", "os.path.realpath",
    "os.path.getsize", "os.path.getmtime", "os.path.samefile", "glob.glob", "glob.iglob", "Path", "pathlib.Path",
    "host_path",
}
# module -> {function: why it may touch the file system itself}
ALLOWED = {
    # The writer and the journal: they never read through a link (O_NOFOLLOW dir_fd walks from the root,
    # parent_problem before every write) and own the state directory they read back.
    "apply/writes.py": {"*": "the atomic writer: an O_NOFOLLOW walk from the root's own descriptor"},
    "apply/journal.py": {"*": "the state directory, written and read only by vgpu-fix (symlinks refused)"},
    "apply/lock.py": {"*": "the lock file in the state directory and /proc/PID/stat of the live host"},
    "apply/crashpoints.py": {"*": "test hooks: files the test suite names in the environment, not the root's"},
    "demo.py": {"*": "builds and snapshots a demo root it created itself"},
    "probe/launch.py": {"*": "runs inside the probe's namespaces: its own /proc/self and the mount targets"},
    "probe/probe_child.py": {"main": "the probe's own /proc/self/comm"},
    "probe/placement.py": {
        "<module>": "the package's own directory",
        "_usable_by": "the live host's python interpreter",
        "interpreter": "the live host's python interpreter",
        "sandbox_interpreter": "the live host's python interpreter",
        "_scratch_dir": "the live host's /run for scratch files",
        "place": "the live host's own folders, hidden behind empty ones in the probe's namespace",
        "private_file": "a scratch file vgpu-fix created",
        "inside": "the probe's own /proc/PID/ns/net",
        "path": "names where a translated probe finds a root file (no file-system access)",
    },
    "system.py": {"udev_live": "the live host's /run", "systemd_live": "the live host's /run"},
    "core.py": {
        "resolve_root": "the root directory itself, as the operator names it",
        "write_output": "--out and --prometheus, paths the operator names",
        "journal_of": "whether the state directory exists (a symlink at or above it is refused by parent_problem "
                      "and Journal.present)",
        "generation_detail": "names the state directory in a message (no file-system access)",
    },
    "profiles.py": {
        "<module>": "the shipped profiles beside the package",
        "locate": "a profile path the operator names, or a shipped one",
        "_site_profiles": "a site profile's real path, resolved inside the root by fixer.facts.paths",
        "resolve": "the `extends` chain beside a profile file already located",
        "_label_name": "a label's file name (no file system access)",
    },
}


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def file_system_calls(package: Path = FIXER) -> dict[tuple[str, str], list[str]]:
    """(module, enclosing function) -> the file-system calls in it, for every module outside fixer/facts/."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        module = path.relative_to(package).as_posix()
        if module.startswith("facts/"):
            continue
        tree = ast.parse(path.read_text(), module)

        def visit(node: ast.AST, function: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(child, child.name)
                    continue
                if isinstance(child, ast.Call) and _name(child.func) in FS_CALLS:
                    found.setdefault((module, function), []).append(f"{_name(child.func)} (line {child.lineno})")
                visit(child, function)

        visit(tree, "<module>")
    return found


def test_no_module_outside_facts_touches_a_root_path_itself():
    offenders = [f"fixer/{module} {function}(): {', '.join(calls)}"
                 for (module, function), calls in file_system_calls().items()
                 if "*" not in ALLOWED.get(module, {}) and function not in ALLOWED.get(module, {})]
    assert offenders == [], ("read the root through fixer.facts.paths (its resolver keeps every symlink "
                             "inside the root), or justify the call in ALLOWED:\n" + "\n".join(offenders))


def test_every_allowance_is_still_needed():
    calls = file_system_calls()
    stale = [f"fixer/{module} {function}" for module, functions in ALLOWED.items() for function in functions
             if (function == "*" and not any(m == module for m, _ in calls))
             or (function != "*" and (module, function) not in calls)]
    assert stale == [], "allowances for code that no longer touches the file system: " + ", ".join(stale)


def test_the_scan_sees_a_direct_read(tmp_path):
    """The scan itself: a module that lists a host path with os.listdir is found, facts/ is not scanned."""
    (tmp_path / "verify").mkdir()
    (tmp_path / "facts").mkdir()
    sneaky = ("import os\nfrom fixer.facts.paths import host_path\n\n"
              "def folders(root, lib):\n    return os.listdir(host_path(root, lib))\n")
    (tmp_path / "verify" / "sneaky.py").write_text(sneaky)
    (tmp_path / "facts" / "reader.py").write_text(sneaky)
    assert file_system_calls(tmp_path) == {("verify/sneaky.py", "folders"): ["os.listdir (line 5)", "host_path (line 5)"]}
