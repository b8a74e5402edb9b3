"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class NmtError(Exception):
    """A user-facing error: bad input, a missing file, an option that cannot be honoured.

    The message is shown as is, on one line, without a traceback; make it say what to fix.
    """


class ConfigError(NmtError, ValueError):
    """An option or config value that cannot be used; the message names the flag (or the field)."""
