"""Tree -> tree rewrites for what sqlglot's SQLite output gets wrong, in ONE ordered table.

Each rewrite is pure: given a node it returns a new node, or the very same
node when it does not apply. The driver applies each one to every node,
children first, in the order of ``REWRITES``.
"""

from __future__ import annotations

from sqlglot import exp

from pg2edge.translators.query import temporal
from pg2edge.translators.query.distinct_on import rewrite_distinct_on
from pg2edge.translators.query.tree import Rewrite, as_integer, call, literal_text, number, paren, string

T = exp.DataType.Type
_TRUE = {"t", "true", "y", "yes", "on", "1"}
_FALSE = {"f", "false", "n", "no", "off", "0"}


def escape_string_to_literal(node: exp.Expression) -> exp.Expression:
    """``E'a\\nb'`` (sqlglot: a byte string SQLite cannot print) -> a plain literal holding the decoded text."""
    if isinstance(node, exp.ByteString):
        return string(str(node.this))
    return node


def boolean_to_integer(node: exp.Expression) -> exp.Expression:
    """``true``/``false`` -> ``1``/``0`` (booleans are stored as 0/1)."""
    if isinstance(node, exp.Boolean):
        return number(1 if node.this else 0)
    return node


def dollar_parameter_to_numbered(node: exp.Expression) -> exp.Expression:
    """``$1`` -> ``?1`` (SQLite numbered parameter; keeps its position when reused or out of order)."""
    if isinstance(node, exp.Parameter) and isinstance(node.this, exp.Literal) and node.this.is_int:
        return exp.var(f"?{node.this.this}")
    return node


def _cast_to_integer(value: exp.Expression) -> exp.Expression:
    # PostgreSQL rounds a fractional value cast to an integer; SQLite truncates.
    inner = value.unnest()
    while isinstance(inner, (exp.Neg, exp.Paren)):
        inner = inner.this
    fractional = isinstance(inner, (exp.Div, exp.Avg, exp.Mul, exp.Sum)) or (
        isinstance(inner, exp.Literal) and not inner.is_string and not inner.is_int) or (
        isinstance(inner, exp.Cast) and inner.to.this in (T.DOUBLE, T.FLOAT, T.DECIMAL)) or (
        isinstance(inner, exp.Anonymous) and str(inner.this).lower() == "round")
    return as_integer(call("round", value) if fractional else value)


def _cast_to_boolean(value: exp.Expression) -> exp.Expression:
    text = literal_text(value) if isinstance(value, exp.Literal) else None
    if text is not None and text.strip().lower() in _TRUE | _FALSE:
        return number(1 if text.strip().lower() in _TRUE else 0)
    if isinstance(value, exp.Literal) and value.is_int:
        return number(1 if int(value.this) else 0)
    lowered = call("lower", exp.Cast(this=value.copy(), to=exp.DataType.build("TEXT")))
    truthy = exp.In(this=lowered, expressions=[string(v) for v in sorted(_TRUE)])
    return exp.Case(ifs=[exp.If(this=exp.Is(this=value, expression=exp.Null()), true=exp.Null()),
                         exp.If(this=truthy, true=number(1))], default=number(0))


def pg_cast_to_storage(node: exp.Expression) -> exp.Expression:
    """``::numeric``/``::int``/``::bool``/``::jsonb``/``::uuid``/enum casts -> what the codec stores."""
    if not isinstance(node, exp.Cast):
        return node
    kind, value = node.to.this, node.this.copy()
    if kind in (T.DECIMAL, T.DOUBLE, T.FLOAT, T.BIGDECIMAL, T.MONEY):
        real = exp.Cast(this=value, to=exp.DataType.build("REAL"))
        params = node.to.expressions
        if kind == T.DECIMAL and params:  # numeric(p[, s]) rounds to s digits (default 0)
            scale = params[1] if len(params) == 2 else number(0)
            return call("round", real, scale.this.copy() if isinstance(scale, exp.DataTypeParam) else scale.copy())
        return real
    if kind in (T.INT, T.BIGINT, T.SMALLINT, T.TINYINT, T.MEDIUMINT):
        return _cast_to_integer(value)
    if kind in (T.TEXT, T.VARCHAR, T.CHAR, T.NVARCHAR, T.NCHAR, T.NAME):
        return exp.Cast(this=value, to=exp.DataType.build("TEXT"))
    if kind == T.BOOLEAN:
        return _cast_to_boolean(value)
    if kind in (T.JSON, T.JSONB):
        return call("json", value)
    if kind == T.UUID:
        text = literal_text(value) if isinstance(value, exp.Literal) else None
        return string(text.lower()) if text is not None else call("lower", value)
    if kind == T.USERDEFINED:  # an enum label is stored as its text
        return value
    return node


def ilike_to_like(node: exp.Expression) -> exp.Expression:
    """``a ILIKE b`` -> ``a LIKE b`` (SQLite LIKE is case-insensitive for ASCII; a finding notes unicode)."""
    if isinstance(node, exp.ILike):
        return exp.Like(**{k: (v.copy() if isinstance(v, exp.Expression) else v) for k, v in node.args.items()})
    return node


def _json_each_values(source: exp.Expression) -> exp.Select:
    return exp.select("value").from_(exp.Table(this=call("json_each", source)))


def _any_operand(node: exp.Expression) -> exp.Expression | None:
    if isinstance(node, exp.Any):
        inner = node.this
        return inner.this if isinstance(inner, exp.Paren) else inner
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "ALL" and len(node.expressions) == 1:
        return node.expressions[0]
    return None


def any_array_to_in(node: exp.Expression) -> exp.Expression:
    """``x = ANY(ARRAY[1,2])`` -> ``x IN (1, 2)``; ``x = ANY(?)``/``ANY(col)`` -> ``x IN (SELECT value FROM json_each(...))``; ``<> ALL`` -> ``NOT IN``."""
    if not isinstance(node, (exp.EQ, exp.NEQ)):
        return node
    rhs = node.expression
    operand = _any_operand(rhs)
    if operand is None:
        return node
    is_all = not isinstance(rhs, exp.Any)
    if isinstance(node, exp.EQ) == is_all:  # `= ALL` / `<> ANY`: no IN form
        return node
    this = node.this.copy()
    if isinstance(operand, exp.Array):
        result: exp.Expression = exp.In(this=this, expressions=[e.copy() for e in operand.expressions])
    else:
        result = exp.In(this=this, query=exp.Subquery(this=_json_each_values(operand.copy())))
    return exp.Not(this=paren(result)) if is_all else result


def array_functions_to_json(node: exp.Expression) -> exp.Expression:
    """Arrays are stored as JSON text: ``ARRAY[..]`` -> ``json_array(..)``, ``array_length``/``cardinality`` -> ``json_array_length``, ``a[i]`` -> ``a ->> '$[i]'``, ``array_agg`` -> ``json_group_array``."""
    if isinstance(node, exp.Array):
        return call("json_array", *[e.copy() for e in node.expressions])
    if isinstance(node, exp.ArraySize) or (
            isinstance(node, exp.Anonymous) and str(node.this).lower() == "cardinality"):
        source = node.this if isinstance(node, exp.ArraySize) else node.expressions[0]
        return call("json_array_length", source.copy())
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
        index = node.expressions[0]
        if isinstance(index, exp.Literal) and index.is_int:
            return exp.JSONExtractScalar(this=node.this.copy(), expression=string(f"$[{index.this}]"))
    if isinstance(node, exp.ArrayAgg):
        return call("json_group_array", node.this.copy())
    return node


def array_to_string_to_group_concat(node: exp.Expression) -> exp.Expression:
    """``array_to_string(arr, sep)`` -> ``(SELECT group_concat(value, sep ORDER BY key) FROM json_each(arr))``."""
    if not isinstance(node, exp.ArrayToString):
        return node
    ordered = exp.Order(this=exp.column("value"), expressions=[exp.Ordered(this=exp.column("key"))])
    agg = exp.GroupConcat(this=ordered, separator=node.expression.copy())
    sub = exp.select(agg).from_(exp.Table(this=call("json_each", node.this.copy())))
    return exp.Subquery(this=sub)


def _repeat(fill: exp.Expression, count: exp.Expression) -> exp.Expression:
    return call("replace", call("hex", call("zeroblob", count)), string("00"), fill)


def pad_to_substr(node: exp.Expression) -> exp.Expression:
    """``lpad(s, n, f)``/``rpad`` -> ``substr``/``replace(hex(zeroblob(n)), '00', f)``, truncating like PostgreSQL."""
    if not isinstance(node, exp.Pad):
        return node
    text, width = node.this.copy(), node.expression.copy()
    fill = node.args.get("fill_pattern")
    fill = fill.copy() if fill is not None else string(" ")
    missing = exp.Sub(this=width.copy(), expression=call("length", text.copy()))
    padding = call("substr", _repeat(fill, width.copy()), number(1), missing)
    padded = exp.DPipe(this=padding, expression=text.copy()) if node.args.get("is_left") else \
        exp.DPipe(this=text.copy(), expression=padding)
    too_long = exp.GTE(this=call("length", text.copy()), expression=width.copy())
    return exp.Case(ifs=[exp.If(this=too_long, true=call("substr", text, number(1), width))], default=padded)


def left_right_to_substr(node: exp.Expression) -> exp.Expression:
    """``left(s, n)`` -> ``substr(s, 1, n)``; ``right(s, n)`` -> ``substr(s, -n)`` (n > 0)."""
    if isinstance(node, exp.Left):
        return call("substr", node.this.copy(), number(1), node.expression.copy())
    if isinstance(node, exp.Right):
        return call("substr", node.this.copy(), exp.Neg(this=node.expression.copy()))
    return node


def least_greatest_to_min_max(node: exp.Expression) -> exp.Expression:
    """``LEAST(a, b)`` -> ``min(coalesce(a, b), coalesce(b, a))``: scalar min/max return NULL on any NULL; PostgreSQL ignores NULLs."""
    if not isinstance(node, (exp.Least, exp.Greatest)):
        return node
    args = [node.this, *node.expressions]
    name = "min" if isinstance(node, exp.Least) else "max"
    if len(args) == 1:
        return args[0].copy()
    rotations = [args[i:] + args[:i] for i in range(len(args))]
    return call(name, *[exp.Coalesce(this=r[0].copy(), expressions=[a.copy() for a in r[1:]]) for r in rotations])


def string_agg_distinct_default_separator(node: exp.Expression) -> exp.Expression:
    """``string_agg(DISTINCT x, ',')`` -> ``group_concat(DISTINCT x)`` (SQLite DISTINCT aggregates take one argument)."""
    if isinstance(node, exp.GroupConcat) and isinstance(node.this, exp.Distinct):
        if literal_text(node.args.get("separator")) == ",":
            return exp.GroupConcat(this=node.this.copy())
    return node


_JSON_FUNCTIONS = {
    "jsonb_build_object": "json_object", "json_build_object": "json_object",
    "jsonb_build_array": "json_array", "json_build_array": "json_array",
    "jsonb_array_length": "json_array_length", "json_array_length": "json_array_length",
    "jsonb_agg": "json_group_array", "json_agg": "json_group_array",
    "jsonb_object_agg": "json_group_object", "json_object_agg": "json_group_object",
}


def json_functions_to_sqlite(node: exp.Expression) -> exp.Expression:
    """``jsonb_build_object`` -> ``json_object``, ``x #>> '{a,b}'`` -> ``x ->> '$.a.b'`` and friends (JSON is stored as text)."""
    if isinstance(node, exp.Anonymous) and str(node.this).lower() in _JSON_FUNCTIONS:
        return call(_JSON_FUNCTIONS[str(node.this).lower()], *[e.copy() for e in node.expressions])
    if isinstance(node, exp.JSONArrayAgg):
        return call("json_group_array", node.this.copy())
    if isinstance(node, (exp.JSONBExtractScalar, exp.JSONBExtract)):
        path = literal_text(node.expression)
        if path is not None and path.startswith("{") and path.endswith("}"):
            parts = [p.strip() for p in path[1:-1].split(",") if p.strip()]
            json_path = "$" + "".join(f"[{p}]" if p.isdigit() else f'."{p}"' for p in parts)
            cls = exp.JSONExtractScalar if isinstance(node, exp.JSONBExtractScalar) else exp.JSONExtract
            return cls(this=node.this.copy(), expression=string(json_path))
    return node


def conflict_keys_to_columns(node: exp.Expression) -> exp.Expression:
    """``ON CONFLICT (a)`` keys as plain columns: sqlglot would print ``a NULLS LAST``, which SQLite rejects."""
    if isinstance(node, exp.OnConflict):
        keys = node.args.get("conflict_keys") or []
        if any(isinstance(k, exp.Ordered) for k in keys):
            out = node.copy()
            out.set("conflict_keys", [k.this.copy() if isinstance(k, exp.Ordered) else k.copy() for k in keys])
            return out
    return node


def distinct_on_to_row_number(node: exp.Expression) -> exp.Expression:
    """``SELECT DISTINCT ON (k) ... ORDER BY k, t`` -> ``ROW_NUMBER() OVER (PARTITION BY k ORDER BY k, t) = 1`` in a subquery, keeping the final ORDER BY/LIMIT."""
    if not isinstance(node, exp.Select):
        return node
    distinct = node.args.get("distinct")
    if distinct is None or not distinct.args.get("on"):
        return node

    return rewrite_distinct_on(node)


REWRITES: tuple[Rewrite, ...] = (
    escape_string_to_literal,
    dollar_parameter_to_numbered,
    temporal.interval_arithmetic_to_datetime,
    temporal.temporal_cast_to_text,
    pg_cast_to_storage,
    temporal.at_time_zone_utc_to_value,
    temporal.extract_to_strftime,
    temporal.date_trunc_to_datetime,
    ilike_to_like,
    any_array_to_in,
    array_to_string_to_group_concat,
    array_functions_to_json,
    json_functions_to_sqlite,
    pad_to_substr,
    left_right_to_substr,
    least_greatest_to_min_max,
    string_agg_distinct_default_separator,
    distinct_on_to_row_number,
    conflict_keys_to_columns,
    boolean_to_integer,
)
