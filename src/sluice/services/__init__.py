"""The service gateway: plain HTTP and WebSocket services behind Sluice (registry, route rules, proxying)."""
