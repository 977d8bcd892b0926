"""Database-per-tenant split (the article's pattern 3): one SQLite file per tenant.

* :mod:`.ids` — tenant id -> file path, safely (no escape from the folder).
* :mod:`.pool` — an LRU of open tenant files (bounded file handles).
* :mod:`.split` — the snapshot split: hub file -> per-tenant files, exactly once.
* :mod:`.router` — CDC routing: per-tenant transactions, one position per file.
* :mod:`.admin` — list and delete tenant files.
* :mod:`.remote` — a URL pattern: one libSQL database per tenant (provisioning, registry in the hub,
  seeding through the remote upload, LibsqlSinks over one bounded HTTP pool).
"""
