"""What a doctor rule produces (a Finding with its Fix) and what it reads (the Context)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:
    from fixer.doctor.snapshot import HostFacts
    from fixer.ollama.logs import LogSummary

Severity = Literal["error", "warning", "info", "external"]
SEVERITY_ORDER = {"external": 0, "error": 1, "warning": 2, "info": 3}


@dataclass(frozen=True)
class Fix:
    """How to fix a finding: the profile setting that does it, or None when no profile can."""

    text: str
    setting: str | None = None

    def to_dict(self) -> dict:
        return {"setting": self.setting, "text": self.text}


@dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    summary: str
    evidence: tuple[str, ...]
    explanation: str
    fix: Fix

    @property
    def fixable(self) -> bool:
        return self.fix.setting is not None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "explanation": self.explanation,
            "fix": self.fix.to_dict(),
        }


@dataclass
class Context:
    """Facts in: the probed host (None when not probed) and the log summary (None without a log)."""

    host: HostFacts | None = None
    log: LogSummary | None = None
    our_dropin: str = "zz-vgpu-fix.conf"
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
