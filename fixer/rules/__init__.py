"""Doctor's rules: small pure functions from host facts and log events to findings."""

from __future__ import annotations

from fixer.rules import libs, logs, preload, sandbox, service  # noqa: F401  (each module registers its rules)
from fixer.rules.base import RULES, Context, Finding, Fix, rule

__all__ = ["RULES", "Context", "Finding", "Fix", "rule"]
