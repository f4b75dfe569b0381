"""The one error type users see: a message that says what is wrong and what to do."""


class ChatVectorError(Exception):
    """Bad input or an impossible request; the scripts print it as `error: ...` and exit 1."""
