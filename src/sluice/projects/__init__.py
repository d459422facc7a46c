"""Project plugins: small FastAPI apps mounted at `/projects/{name}` that call upstreams through the gateway."""
