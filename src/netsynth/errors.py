"""Error types. The CLI turns `NetsynthError` into one line on stderr and exit status 2.

Library code raises these (never bare exceptions) for anything a user can cause: a file that is not a
capture, a flow table with a wrong column, an unknown option. Bugs stay ordinary exceptions.
"""


class NetsynthError(Exception):
    """Base class of every error a user can cause and fix."""


class InputError(NetsynthError):
    """Bad input: a file that cannot be read, a malformed table, an invalid option value."""


class NotFittedError(NetsynthError):
    """A generator was asked to sample or save before `fit`."""


def one_line(exc: BaseException, limit: int = 160) -> str:
    """A library exception as one short line for an InputError message. torch's state-dict errors
    put the useful part on line 2 after a generic first line ending in ':', so that one keeps both."""
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    text = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"
