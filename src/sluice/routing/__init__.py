"""Routing: which provider and upstream model serve a request."""
