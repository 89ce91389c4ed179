"""The two kinds of failure a handler can signal; anything else counts as transient."""


class TransientError(Exception):
    """Worth retrying later: a connection dropped, a dependency is busy or answered 5xx."""


class PermanentError(Exception):
    """Retrying cannot help: a rule was violated or an input artifact is missing or corrupt."""
