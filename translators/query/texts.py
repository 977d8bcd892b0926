"""Text semantics that differ between PostgreSQL and SQLite: LIKE, char(n), split_part, regex substring.

- ``LIKE`` is case-sensitive in PostgreSQL and ASCII-case-insensitive in
  SQLite: a literal pattern becomes the equivalent ``GLOB`` (case-sensitive,
  ``%``/``_`` and the escape character, backslash by default, converted);
  any other pattern is an error finding. ``ILIKE`` becomes ``LIKE`` with
  PostgreSQL's default escape (backslash).
- ``char(n)`` values are stored with their blank padding in a column with the
  ``RTRIM`` collation (comparisons, ORDER BY, GROUP BY ignore trailing blanks,
  as in PostgreSQL); where PostgreSQL converts them to text (``::text``,
  ``||``, text functions) the padding is trimmed here too.
"""

from __future__ import annotations

from sqlglot import exp

from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.query.infer import TypeContext, kind_of
from pg2edge.translators.query.tree import Rewrite, call, excerpt, literal_text, string

_GLOB_SPECIAL = {"*": "[*]", "?": "[?]", "[": "[[]"}
# text functions whose bpchar argument PostgreSQL converts to text (trailing blanks dropped)
_TEXT_CONSUMERS = (exp.DPipe, exp.Concat, exp.ConcatWs, exp.Length, exp.Upper, exp.Lower, exp.Substring,
                   exp.StrPosition, exp.Trim, exp.Anonymous, exp.Left, exp.Right, exp.Pad, exp.SplitPart)
_TEXT_TYPES = (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.NVARCHAR)
# json_quote() leaves these characters alone, so a delimiter made of them cannot match inside an escape
_SAFE_DELIMITER = set(" !#$%&'()*+,-./:;<=>?@[]^_`{|}~")


def like_to_glob(pattern: str, escape: str | None = "\\") -> str | None:
    """A PostgreSQL LIKE pattern as the SQLite GLOB pattern matching the same strings, case-sensitively."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if escape and ch == escape:
            nxt = next(chars, None)
            if nxt is None:
                return None  # PostgreSQL: "LIKE pattern must not end with escape character"
            out.append(_GLOB_SPECIAL.get(nxt, nxt))
        elif ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        else:
            out.append(_GLOB_SPECIAL.get(ch, ch))
    return "".join(out)


def text_semantics(context: TypeContext, found: list[Finding]) -> Rewrite:
    """Build the rewrite for LIKE/ILIKE, char(n), split_part and regex substring."""

    def note(level: Level, code: str, node: exp.Expression, message: str) -> None:
        finding = Finding(level, code, excerpt(node), message)
        if finding not in found:
            found.append(finding)

    def like(node: exp.Expression, escape: str | None) -> exp.Expression:
        pattern = literal_text(node.expression) if isinstance(node.expression, exp.Literal) else None
        glob = like_to_glob(pattern, escape) if pattern is not None else None
        if glob is not None:
            out: exp.Expression = exp.Glob(this=node.this.copy(), expression=string(glob))
            return exp.Not(this=out) if node.args.get("negate") else out
        note(Level.ERROR, "like_case", node,
             "LIKE with a pattern that is not a literal: SQLite's LIKE ignores ASCII case, PostgreSQL's does not "
             "(use a literal pattern, or GLOB with a GLOB pattern)")
        return node

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Like) and not isinstance(node.parent, exp.Escape):
            return like(node, "\\")
        if isinstance(node, exp.Escape) and isinstance(node.this, (exp.Like, exp.ILike)):
            escape = literal_text(node.expression) if isinstance(node.expression, exp.Literal) else None
            if escape is None or len(escape) > 1:
                note(Level.ERROR, "like_escape", node, "the ESCAPE of LIKE must be a literal of one character")
                return node
            if isinstance(node.this, exp.Like):
                return like(node.this, escape or None)
            return exp.Escape(this=_as_like(node.this), expression=string(escape))
        if isinstance(node, exp.ILike) and not isinstance(node.parent, exp.Escape):
            plain = _as_like(node)
            pattern = literal_text(node.expression) if isinstance(node.expression, exp.Literal) else None
            if pattern is not None and "\\" not in pattern:
                return plain
            return exp.Escape(this=plain, expression=string("\\"))  # PostgreSQL's default escape
        if isinstance(node, exp.Column) and kind_of(node, context) == "bpchar" and _to_text(node):
            return call("rtrim", node.copy(), string(" "))
        if isinstance(node, exp.SplitPart):
            return split_part(node)
        if isinstance(node, exp.Substring) and isinstance(node.args.get("start"), exp.Literal) \
                and node.args["start"].is_string:
            note(Level.ERROR, "regex_substring", node, "substring(x FROM pattern) uses a regular expression; "
                 "SQLite has none")
        return node

    def split_part(node: exp.SplitPart) -> exp.Expression:
        delimiter = node.args.get("delimiter")
        index = node.args.get("part_index")
        text = literal_text(delimiter) if isinstance(delimiter, exp.Literal) else None
        if text is None or not text or not set(text) <= _SAFE_DELIMITER or not (
                isinstance(index, exp.Literal) and index.is_int and int(index.this) > 0):
            note(Level.ERROR, "split_part", node,
                 "split_part() is translated for a literal delimiter of punctuation and a positive literal field "
                 "number only")
            return node
        value = node.this.copy()
        as_json = exp.DPipe(this=exp.DPipe(this=string("["), expression=call(
            "replace", call("json_quote", value), string(text), string('","'))), expression=string("]"))
        part = exp.JSONExtractScalar(this=as_json, expression=string(f"$[{int(index.this) - 1}]"))
        return exp.Case(ifs=[exp.If(this=exp.Is(this=node.this.copy(), expression=exp.Null()), true=exp.Null())],
                        default=exp.Coalesce(this=part, expressions=[string("")]))

    rewrite.__name__ = "text_semantics"
    return rewrite


def _as_like(node: exp.Expression) -> exp.Like:
    """An ILIKE as LIKE, keeping NOT."""
    return exp.Like(this=node.this.copy(), expression=node.expression.copy(), negate=node.args.get("negate"))


def _to_text(column: exp.Column) -> bool:
    """PostgreSQL turns this char(n) operand into text (trailing blanks dropped)."""
    parent = column.parent
    if isinstance(parent, exp.Cast):
        return parent.to.this in _TEXT_TYPES
    return isinstance(parent, _TEXT_CONSUMERS)


__all__ = ["like_to_glob", "text_semantics"]
