"""Alembic migrations of the request log, shipped inside the package."""
