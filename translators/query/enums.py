"""Enums are stored as their label; PostgreSQL orders and compares them by declaration order.

With the labels known (from the source catalog or what the replica recorded),
``ORDER BY``, ``<``/``>``/``BETWEEN`` against labels, and ``min``/``max`` use
the label's position instead of its text.
"""

from __future__ import annotations

from sqlglot import exp

from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.query.infer import TypeContext, enum_labels_of
from pg2edge.translators.query.tree import Rewrite, excerpt, literal_text, number, string

_ORDER_COMPARE = (exp.GT, exp.GTE, exp.LT, exp.LTE)


def position(value: exp.Expression, labels: tuple[str, ...]) -> exp.Expression:
    """``CASE value WHEN 'a' THEN 0 WHEN 'b' THEN 1 END``: the label's declaration position."""
    return exp.Case(this=value.copy(), ifs=[exp.If(this=string(label), true=number(i)) for i, label in enumerate(labels)])


def label(value: exp.Expression, labels: tuple[str, ...]) -> exp.Expression:
    """The inverse of ``position``: a position back to its label."""
    return exp.Case(this=value, ifs=[exp.If(this=number(i), true=string(lab)) for i, lab in enumerate(labels)])


def enum_ordering(context: TypeContext, found: list[Finding]) -> Rewrite:
    """Build the rewrite: enum columns ordered, range-compared and min/max'd by declaration order."""

    def literal_position(node: exp.Expression, labels: tuple[str, ...], where: exp.Expression) -> exp.Expression | None:
        while isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.USERDEFINED:
            node = node.this  # 'shipped'::order_status
        text = literal_text(node) if isinstance(node, exp.Literal) else None
        if text is None:
            return None
        if text not in labels:
            finding = Finding(Level.ERROR, "enum_label", excerpt(where), f"{text!r} is not a label of the enum")
            if finding not in found:
                found.append(finding)
            return None
        return number(labels.index(text))

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Ordered):
            labels = enum_labels_of(node.this, context)
            if labels is not None:
                out = node.copy()
                out.set("this", position(node.this, labels))
                return out
        if isinstance(node, (*_ORDER_COMPARE, exp.Between)):
            keys = ["this", "expression"] if not isinstance(node, exp.Between) else ["this", "low", "high"]
            sides = [node.args.get(k) for k in keys]
            labels = next((enum_labels_of(s, context) for s in sides if s is not None
                           and enum_labels_of(s, context) is not None), None)
            if labels is None:
                return node
            compared = node.copy()
            for key, side in zip(keys, sides):
                assert side is not None
                if enum_labels_of(side, context) == labels:
                    compared.set(key, position(side, labels))
                else:
                    pos = literal_position(side, labels, node)
                    if pos is None:
                        return node
                    compared.set(key, pos)
            return compared
        if isinstance(node, (exp.Min, exp.Max)):
            labels = enum_labels_of(node.this, context)
            if labels is not None:
                agg = node.__class__(this=position(node.this, labels))
                return label(agg, labels)
        return node

    rewrite.__name__ = "enum_ordering"
    return rewrite
