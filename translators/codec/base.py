"""What every value encoder shares: the inexact-value signal and the codec error."""

from __future__ import annotations

from typing import Any

from pg2edge.dsn import SESSION_SETTINGS, session_options  # re-exported: the codec reads this text format
from pg2edge.errors import Pg2EdgeError

__all__ = ["SESSION_SETTINGS", "CodecError", "Inexact", "session_options"]

# The text format the codec reads (SESSION_SETTINGS, defined in the core so connections can be opened
# with it): every connection whose values reach the codec is opened with these session settings,
# whatever the server's defaults are. UTC is also the codec's fast path for timestamptz.


class Inexact(Exception):
    """Raised by an encoder: the value has no exact SQLite form; ``substitute`` is what would be stored."""

    def __init__(self, code: str, reason: str, substitute: Any) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.substitute = substitute


class CodecError(Pg2EdgeError):
    """A value SQLite cannot hold exactly (strict path), or a value that is not valid input at all."""

    def __init__(self, message: str, *, table: str = "", column: str = "", value: Any = None,
                 code: str = "invalid-value") -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.value = value
        self.code = code
