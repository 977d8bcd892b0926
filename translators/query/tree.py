"""Small tree helpers shared by the query rewrites (sqlglot expressions)."""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

Rewrite = Callable[[exp.Expression], exp.Expression]


def call(name: str, *args: exp.Expr) -> exp.Expression:
    """A SQLite function call rendered verbatim: ``name(args...)``."""
    return exp.Anonymous(this=name, expressions=list(args))


def string(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def number(value: int | float) -> exp.Literal | exp.Neg:
    return exp.Literal.number(value)


def as_integer(node: exp.Expression) -> exp.Expression:
    return exp.Cast(this=node, to=exp.DataType.build("INTEGER"))


def paren(node: exp.Expression) -> exp.Expression:
    return exp.Paren(this=node)


def literal_text(node: exp.Expression | None) -> str | None:
    """The text of a string literal (or a bare unit keyword), else None."""
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    if isinstance(node, exp.Var):
        return str(node.this)
    return None


def excerpt(node: exp.Expr, limit: int = 80) -> str:
    """The PostgreSQL text of a node, shortened for a finding's object."""
    text = node.sql(dialect="postgres")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bottom_up(node: exp.Expression, rewrite: Rewrite) -> exp.Expression:
    """Apply ``rewrite`` to every node, children first; mutates ``node`` (pass a copy)."""
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expression):
            new = bottom_up(value, rewrite)
            if new is not value:
                node.set(key, new)
        elif isinstance(value, list):
            items = [bottom_up(v, rewrite) if isinstance(v, exp.Expression) else v for v in value]
            if any(a is not b for a, b in zip(items, value)):
                node.set(key, items)
    return rewrite(node)
