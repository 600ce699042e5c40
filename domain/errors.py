"""The domain's error hierarchy; each adapter maps it once (HTTP problem, DLQ reason, exit 2)."""

from __future__ import annotations


class PearlError(Exception):
    """Base of every error PeaRL raises on purpose; `code` is a stable machine-readable slug."""

    code = "pearl-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        #: True once the domain wrote this refusal to the audit trail itself.
        self.recorded = False


class NotFound(PearlError):
    """The addressed thing does not exist (or is not visible to the caller)."""

    code = "not-found"


class Conflict(PearlError):
    """The command contradicts the current state (duplicate, concurrent change, wrong status)."""

    code = "conflict"


class ConcurrencyConflict(Conflict):
    """Another writer changed the same aggregate first; retrying may succeed."""

    code = "concurrency-conflict"


class CrossOrg(NotFound):
    """The caller asked for another org's resource; answered as NotFound, recorded as a denial."""

    code = "not-found"


class Forbidden(PearlError):
    """The caller is authenticated but not allowed to do this."""

    code = "forbidden"


class AutonomyExceeded(Forbidden):
    """An agent tried what its autonomy level (or the kill switch) does not allow."""

    code = "autonomy-exceeded"


class GuardRailViolation(Forbidden):
    """An agent's action broke a guard rail of its task packet (paths, size)."""

    code = "guard-rail"


class LeaseConflict(Conflict):
    """The task packet is not held by the caller, or the lease ran out."""

    code = "lease-conflict"


class Unauthenticated(PearlError):
    """No valid credential was presented."""

    code = "unauthenticated"


class InvalidInput(PearlError):
    """The input is malformed or violates a rule; nothing was recorded."""

    code = "invalid-input"


class PayloadTooLarge(InvalidInput):
    """The input is larger than its configured limit."""

    code = "payload-too-large"


class IdempotencyMismatch(InvalidInput):
    """The idempotency key was already used with a different request body."""

    code = "idempotency-key-reused"


class ReportError(InvalidInput):
    """A scanner report could not be parsed; the whole report is rejected."""

    code = "invalid-report"


class ReportTooComplex(ReportError):
    """A report is nested, keyed or sized past the limits that keep parsing memory bounded."""

    code = "report-too-complex"


class NotReady(PearlError):
    """A read the command depends on has not caught up yet; retrying shortly will work."""

    code = "not-ready"


class UnstorableText(InvalidInput):
    """An event would hold text no store or projection can carry (NUL, a lone surrogate)."""

    code = "unstorable-text"
