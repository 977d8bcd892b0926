"""The value codec: the ONE place a PostgreSQL value becomes an SQLite value.

``row_codec(table, options=...)`` builds a :class:`RowCodec` from the type rules
(translators/typemap.py). Snapshot (COPY text), CDC (pgoutput text) and the
validator all encode through it. A value SQLite cannot hold exactly is never
changed silently: with ``[translate] inexact = "record"`` (default) the
documented substitute is stored and a named Finding (table.column, value) is
recorded in ``codec.findings``; with ``"raise"`` a CodecError stops the copy.
"""

from __future__ import annotations

from pg2edge.translators.codec.base import SESSION_SETTINGS, CodecError, Inexact, session_options
from pg2edge.translators.codec.row import RowCodec, row_codec

__all__ = ["SESSION_SETTINGS", "CodecError", "Inexact", "RowCodec", "row_codec", "session_options"]
