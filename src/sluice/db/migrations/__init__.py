"""Alembic migrations of the application database (request log, keys, spend, prompts), shipped inside the package."""
