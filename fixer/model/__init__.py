"""Typed data: the desired state (a Profile and its parts) and the results operations return."""
