"""Logging filter, and the hook that installs it, that keeps a user error to one message.
There is no Kedro failure log or resume hint for it."""

from __future__ import annotations

import logging
import sys

from kedro.framework.hooks import hook_impl

from jewelry_pipeline.core.errors import user_error_in


class HideHandledUserErrors(logging.Filter):
    """Drops warnings and errors logged while a `UserInputError` is being handled (the CLI prints it
    once, plainly).

    Kedro logs "Node ... failed with error" and a `--from-nodes` resume hint inside its `except`
    blocks; for a user error the hint is wrong (the fix is in the message) and the message would be
    printed twice.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        handling = sys.exc_info()[1]
        return (
            handling is None or record.levelno < logging.WARNING or user_error_in(handling) is None
        )


class QuietUserErrors:
    """Hook: adds `HideHandledUserErrors` to the root handlers once logging is configured (Kedro's
    logging config accepts neither filter factories nor handler classes from project modules)."""

    @hook_impl
    def after_context_created(self, context) -> None:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, HideHandledUserErrors) for f in handler.filters):
                handler.addFilter(HideHandledUserErrors())
