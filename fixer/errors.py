"""One exception tree and the exit codes it maps to."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fixer.model.plan import Plan
    from fixer.model.verify import VerifyReport


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    INVALID_INPUT = 3
    DRIFT = 4
    CONFLICT = 5
    VERIFY_FAILED_ROLLED_BACK = 6
    ROLLBACK_FAILED = 7
    LOCKED = 8
    BACKEND_NOT_LOADING = 9
    PROBLEM_FOUND = 10  # doctor: an error-severity (or outside-the-VM) finding
    NOT_CONFIRMED = 11  # a change to the live root was not confirmed (declined, or no terminal and no --yes)
    NOT_PROVEN = 12  # verify ran, nothing failed, but the proof level asked was not reached
    INTERRUPTED = 130  # SIGINT (128 + 2)
    TERMINATED = 143  # SIGTERM (128 + 15)


# verify's exit code for each outcome of its report (fixer.model.proof.Outcome).
VERIFY_EXIT = {"passed": ExitCode.OK, "failed": ExitCode.BACKEND_NOT_LOADING, "not_proven": ExitCode.NOT_PROVEN}


class FixerError(Exception):
    """Base of every error the CLI turns into an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, details: list[str] | None = None, plan: Plan | None = None,
                 generation: int | None = None, verify: VerifyReport | None = None,
                 verify_after_rollback: VerifyReport | None = None, facts: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details or [])
        self.plan = plan  # the plan the failed run executed or refused
        self.generation = generation  # the journal generation it wrote or was undoing
        self.verify = verify  # verify's report, when verify decided the outcome
        self.verify_after_rollback = verify_after_rollback
        self.facts = dict(facts or {})  # further data for --json (e.g. the lock holder)

    def lines(self) -> list[str]:
        return [self.message, *self.details]


class UsageError(FixerError):
    """Options that cannot go together (typer's own usage errors exit 2 as well)."""

    exit_code = ExitCode.USAGE


class InvalidInput(FixerError):
    """A profile, a --set value, a plan file or another input is unusable."""

    exit_code = ExitCode.INVALID_INPUT


class ProfileError(InvalidInput):
    """Profile validation failed; `details` holds one `location: message` line per error."""


class Conflict(FixerError):
    """Host state blocks the plan (wrong path type, stale plan, drift since apply, unsafe parent)."""

    exit_code = ExitCode.CONFLICT


def host_conflict(exc: OSError, where: str) -> Conflict:
    """An OSError the readers did not expect, as the conflict it is: the path that failed and why."""
    return Conflict(f"{exc.filename or where}: {exc.strerror or exc}")


class LockHeld(FixerError):
    exit_code = ExitCode.LOCKED


class VerifyFailedRolledBack(FixerError):
    exit_code = ExitCode.VERIFY_FAILED_ROLLED_BACK


class RollbackFailed(FixerError):
    exit_code = ExitCode.ROLLBACK_FAILED


class BackendNotLoading(FixerError):
    exit_code = ExitCode.BACKEND_NOT_LOADING


class NotProven(FixerError):
    """The proof level asked cannot be (or was not) reached: nothing failed, nothing was proven."""

    exit_code = ExitCode.NOT_PROVEN


class ExternalCommandFailed(FixerError):
    """An external command (ldconfig, systemctl, journalctl) failed. Its exit code is the one of the
    step it failed in (`exit_code_of`); apply and rollback wrap it first."""

    exit_code = ExitCode.INTERNAL


# The exit code an ExternalCommandFailed gets in each command that can run one.
STEP_CODES = {
    "apply": ExitCode.CONFLICT,  # as ApplyFailed: the change was undone
    "rollback": ExitCode.ROLLBACK_FAILED,
    "verify": ExitCode.BACKEND_NOT_LOADING,
    "doctor": ExitCode.INVALID_INPUT,  # journalctl could not give the log to read
}


def exit_code_of(command: str, exc: FixerError) -> int:
    """The exit code `command` ends with on `exc` (for every face: the CLI's status, the JSON `exit_code`)."""
    if isinstance(exc, ExternalCommandFailed):
        return int(STEP_CODES.get(command, exc.exit_code))
    return int(exc.exit_code)


class Interrupted(FixerError):
    """SIGINT or SIGTERM stopped a run at a safe point; the message says what was finished or undone."""

    def __init__(self, message: str, signum: int, **kwargs):
        super().__init__(message, **kwargs)
        self.signum = signum
        self.exit_code = ExitCode(128 + signum)


class ApplyFailed(FixerError):
    """A write or post-action failed mid-apply; every change made so far was restored."""

    exit_code = ExitCode.CONFLICT


class NotConfirmed(FixerError):
    """A change to the live root was not confirmed (declined, or no terminal and no --yes); nothing changed."""

    exit_code = ExitCode.NOT_CONFIRMED
