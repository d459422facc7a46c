"""The HTTP edge: turns HTTP into calls on the Gateway and results back into HTTP."""
