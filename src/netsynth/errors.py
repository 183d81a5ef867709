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
