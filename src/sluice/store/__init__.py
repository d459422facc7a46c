"""The request log: persistence, redaction, retention and queries of every exchange."""
