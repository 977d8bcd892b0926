"""PostgreSQL -> SQLite translation: schema model, type rules, DDL, value codec, queries."""
