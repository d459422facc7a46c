"""Sluice: an OpenAI-compatible API gateway."""
