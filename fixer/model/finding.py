"""What doctor reports: a Finding (severity, evidence, explanation) and the Fix for it, one JSON shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    """One thing doctor found: what, how sure (severity), the evidence, why it matters, and the fix."""

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
