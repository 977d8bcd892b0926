"""Flow parameters are stored on the Prefect server in clear: they never carry the DSN password.

The password moves to ``PGPASSWORD`` in this process's environment, which
libpq reads when a DSN has none, and which the flow runs started here inherit.
"""

from __future__ import annotations

import os

from pg2edge.config import Config
from pg2edge.dsn import split_password


def parameters_config(config: Config) -> Config:
    """``config`` with the source DSN's password removed (and handed to PGPASSWORD)."""
    if not config.source.dsn:
        return config
    dsn, password = split_password(config.source.dsn)
    if password is None:
        return config
    os.environ["PGPASSWORD"] = password
    return config.model_copy(update={"source": config.source.model_copy(update={"dsn": dsn})})
