"""Doctor's rules: small pure functions from host facts and log events to findings."""

from __future__ import annotations

from fixer.doctor.rules import driver, hardening, libs, llama_server, logs, preload, service  # noqa: F401  (each module registers its rules)
from fixer.doctor.rules.base import RULES, Context, Finding, Fix, rule

__all__ = ["RULES", "Context", "Finding", "Fix", "rule"]
