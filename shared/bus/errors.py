"""The kinds of failure a handler can signal; anything else counts as transient."""


class TransientError(Exception):
    """Worth retrying later: a connection dropped, a dependency is busy or answered 5xx."""


class PermanentError(Exception):
    """Retrying cannot help: a rule was violated or an input artifact is missing or corrupt."""


class GaveUp(Exception):
    """The handler already committed its own give-up (dead letter, cycle.failed) with the claim.

    The consumer only terminates the message and counts it; it writes no second record.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
