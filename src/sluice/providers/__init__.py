"""Upstream provider adapters behind one small interface."""
