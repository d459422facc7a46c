"""Telemetry: metrics now; traces and structured logs join here."""
