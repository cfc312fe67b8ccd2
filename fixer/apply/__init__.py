"""Changing a host: the run lock, the write-ahead journal, atomic writes, post-actions and rollback."""
