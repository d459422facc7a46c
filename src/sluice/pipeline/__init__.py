"""The one request path: every edge runs its exchanges through `flow.Flow` and answers with `answer`."""
