"""The one error type users see: its message is a single line naming what is wrong."""


class KubetuneError(Exception):
    """An expected failure. The CLI prints ``kubetune: <message>`` and exits non-zero.

    Messages name the field or object first ("space[1].low: ...") so a user
    can find it without a traceback.
    """

    exit_code = 1


class UsageError(KubetuneError):
    """Bad input from the user: a spec, a value or a command line.

    Exit 2 also fails the chart's controller Job at once: no restart fixes the input.
    """

    exit_code = 2


class StudyFailed(KubetuneError):
    """The study ran and stopped because too many trials failed.

    Its own exit code, so the chart's podFailurePolicy fails the controller Job
    at once: a restarted controller would find the same failures and stop again.
    """

    exit_code = 3


class SpecError(UsageError):
    """The study spec, or a setting declared like one, is invalid; the message names the field."""
