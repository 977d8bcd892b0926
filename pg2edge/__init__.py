"""pg2edge: move the read-heavy part of PostgreSQL to edge SQLite and keep it in sync.

The shared core: configuration, CLI entry point, connection helpers, the
throwaway PostgreSQL cluster and the sample shop database. The four phases
live in the top-level packages analyzers/, translators/, pipeline/,
validators/ and flows/.
"""

__version__ = "0.1.0"
