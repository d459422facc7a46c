"""Rate limits, concurrency limits and budgets: what a request must pass before it goes upstream."""
