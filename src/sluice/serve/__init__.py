"""The serving process: granian's entry, worker settings and the helper processes' pipes."""
