"""Sinks: one module per target; each applies a batch atomically together with its position."""
