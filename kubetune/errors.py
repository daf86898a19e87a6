"""The one error type users see: its message is a single line naming what is wrong."""


class KubetuneError(Exception):
    """An expected failure. The CLI prints ``kubetune: <message>`` and exits non-zero.

    Messages name the field or object first ("space[1].low: ...") so a user
    can find it without a traceback.
    """

    exit_code = 1


class UsageError(KubetuneError):
    """Bad input from the user: a spec, a value or a command line."""

    exit_code = 2
