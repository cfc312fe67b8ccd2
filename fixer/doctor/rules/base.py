"""What a doctor rule reads (the Context) and how rules register; what they produce is model.finding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from fixer.model.finding import SEVERITY_ORDER, Finding, Fix, Severity  # noqa: F401  (the rules' vocabulary)

if TYPE_CHECKING:
    from fixer.doctor.snapshot import HostFacts
    from fixer.ollama.logs import LogSummary

@dataclass
class Context:
    """Facts in: the probed host (None when not probed) and the log summary (None without a log)."""

    host: HostFacts | None = None
    log: LogSummary | None = None
    our_dropin: str = "zz-vgpu-fix.conf"
    generation: str | None = None  # the installed Ollama's discovery generation (fixer.ollama.detect), if known
    notes: dict = field(default_factory=dict)


Rule = Callable[[Context], list[Finding]]
RULES: list[Rule] = []


def rule(func: Rule) -> Rule:
    """Register a rule; it stays a plain function that tests call directly."""
    RULES.append(func)
    return func


def finding(
    id: str,
    severity: Severity,
    summary: str,
    evidence: list[str] | tuple[str, ...],
    explanation: str,
    fix: str,
    setting: str | None = None,
) -> Finding:
    return Finding(id, severity, summary, tuple(evidence), explanation, Fix(fix, setting))
