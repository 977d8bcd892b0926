"""Kafka transport: a publisher (source -> topic) and replica consumers (topic -> SQLite)."""
