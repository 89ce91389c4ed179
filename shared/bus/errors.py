"""The kinds of failure a handler can signal; anything else counts as transient."""


class TransientError(Exception):
    """Worth retrying later: a connection dropped, a dependency is busy or answered 5xx."""


class PermanentError(Exception):
    """Retrying cannot help: a rule was violated or an input artifact is missing or corrupt."""


class UnknownCycleError(PermanentError):
    """The event names a cycle, or a step of one, that this platform never started.

    Refused like any permanent error (a dead letter with the reason), but the stage template
    writes neither the service's failed row nor `cycle.failed`: there is no cycle of ours to
    end, and an id made up or copied by a sender must not be able to end, or overwrite the
    rows of, a real cycle.
    """


class GaveUp(Exception):
    """The handler already committed its own give-up (dead letter, cycle.failed) with the claim.

    The consumer only terminates the message and counts it; it writes no second record.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
