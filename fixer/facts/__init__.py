"""Read-only facts of a root: paths, systemd units, ld.so's files, ELF objects and the loader's search.

Nothing in this package writes to a host or runs a command."""
