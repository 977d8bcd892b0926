"""Sources: what the engine reads batches of whole source transactions from (PostgreSQL snapshot and
logical decoding, a Kafka topic)."""
