"""The application database: engine, tables, migrations and URL handling for the request log, managed keys, spend
and prompt templates."""
