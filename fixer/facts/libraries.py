"""Read-only: the shared objects a directory of a root holds, with their symbols, and the directories
that match a pattern inside the root."""

from __future__ import annotations

import stat

from fixer.facts import paths
from fixer.facts.elf import ElfError, ElfInfo, read_elf


def shared_objects(root: str, directory: str, limit: int = 256) -> list[tuple[str, ElfInfo]]:
    """(guest path, ELF facts with symbols) of each regular `*.so*` file in `directory` (resolved inside
    the root), among its first `limit` names in name order; symlinks, other files and unreadable ELF are
    skipped."""
    listed = paths.entries(root, directory)
    found = []
    for name, (status, _) in list((listed or {}).items())[:limit]:
        path = f"{directory.rstrip('/')}/{name}"
        real = paths.real_path(root, path)
        if ".so" not in name or not stat.S_ISREG(status.st_mode) or real is None:
            continue
        try:
            found.append((path, read_elf(real, symbols=True)))
        except ElfError:
            continue
    return found


def directories(root: str, pattern: str) -> list[str]:
    """Guest paths of the directories inside the root matching the shell `pattern`, sorted."""
    return [path for path in paths.glob_in(root, pattern) if paths.is_dir(root, path)]
