"""pg2edge: move the read-heavy part of PostgreSQL to edge SQLite and keep it in sync.

One import name. The phases live in the repository's top-level folders and are
imported through it: ``pg2edge.analyzers``, ``pg2edge.translators``,
``pg2edge.pipeline``, ``pg2edge.validators`` and ``pg2edge.flows`` (links in this
folder point at them). The core (``pg2edge.config``, ``pg2edge.dsn``,
``pg2edge.errors``) is the ground floor; the CLI (``pg2edge.commands``) the top.
"""

__version__ = "0.1.0"
