"""Read-only: the shared objects a directory of a root holds, with their symbols, and the directories
that match a pattern inside the root."""

from __future__ import annotations

import glob
import os

from fixer.facts.elf import ElfError, ElfInfo, read_elf
from fixer.facts.linker import resolve_in_root
from fixer.facts.paths import host_path


def shared_objects(root: str, directory: str, limit: int = 256) -> list[tuple[str, ElfInfo]]:
    """(guest path, ELF facts with symbols) of each regular `*.so*` file in `directory` (resolved inside
    the root), at most `limit` names in name order; symlinks, other files and unreadable ELF are skipped."""
    inside = resolve_in_root(root, directory)
    if inside is None or not os.path.isdir(host_path(root, inside)):
        return []
    try:
        names = sorted(os.listdir(host_path(root, inside)))[:limit]
    except OSError:
        return []
    found = []
    for name in names:
        real = host_path(root, f"{inside}/{name}")
        if ".so" not in name or os.path.islink(real) or not os.path.isfile(real):
            continue
        try:
            found.append((f"{directory.rstrip('/')}/{name}", read_elf(real, symbols=True)))
        except ElfError:
            continue
    return found


def directories(root: str, pattern: str) -> list[str]:
    """Guest paths of the directories inside the root matching the shell `pattern`, sorted."""
    matches = sorted(glob.glob(host_path(root, pattern)))
    return ["/" + os.path.relpath(m, root) if root != "/" else m for m in matches if os.path.isdir(m)]
