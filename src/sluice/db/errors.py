"""The exceptions that mean "the database failed", named without importing SQLAlchemy."""

from __future__ import annotations

import sys


def database_errors(*others: type[Exception]) -> tuple[type[Exception], ...]:
    """SQLAlchemy's errors, OSError and `others`, for `except database_errors():` (evaluated only once something is
    raised).

    Without SQLAlchemy loaded none of its errors can have been raised, so this never imports it: a gateway with no
    database feature keeps it out of memory."""
    if "sqlalchemy.exc" not in sys.modules:
        return OSError, *others
    from sqlalchemy.exc import SQLAlchemyError

    return SQLAlchemyError, OSError, *others
