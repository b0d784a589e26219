"""User errors: problems with the user's folder, data or parameters.
Shown as one message without a traceback."""

from __future__ import annotations


class UserInputError(ValueError):
    """Something the user can fix (folder, photos, parameters, order of commands); the message says
    how."""


def user_error_in(exc: BaseException) -> UserInputError | None:
    """The `UserInputError` that `exc` is or was raised from (Kedro wraps dataset errors), if
    any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserInputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
