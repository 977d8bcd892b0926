"""Real-application queries over the sample shop (pg2edge/sample.py) for the translation corpus test.

Each query runs on PostgreSQL and, translated, on the SQLite copy; results
must be equal, or the translation must report the named finding codes in
``untranslatable``. Queries with ORDER BY are fully ordered (ties broken).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusQuery:
    name: str
    sql: str
    untranslatable: tuple[str, ...] = ()


CORPUS: tuple[CorpusQuery, ...] = (
    # --- joins, aggregates -------------------------------------------------------------
    CorpusQuery("products_per_category", """
        SELECT c.name, count(*) AS n FROM products p JOIN categories c ON c.id = p.category_id
        GROUP BY c.name ORDER BY n DESC, c.name LIMIT 10"""),
    CorpusQuery("active_cheap_products", """
        SELECT sku, price FROM products WHERE active AND price < 50 ORDER BY price, sku LIMIT 20"""),
    CorpusQuery("active_equals_true", "SELECT count(*) FROM products WHERE active = true"),
    CorpusQuery("inactive_not_true", "SELECT count(*) FROM products WHERE active IS NOT TRUE"),
    CorpusQuery("price_stats_by_category", """
        SELECT category_id, round(avg(price), 2) AS avg_price, max(price) AS hi, min(price) AS lo, sum(price) AS total
        FROM products GROUP BY category_id ORDER BY category_id"""),
    CorpusQuery("price_between", "SELECT count(*) FROM products WHERE price BETWEEN 9.5 AND 100"),
    CorpusQuery("category_revenue_cte", """
        WITH cat_rev AS (
            SELECT p.category_id, sum(o.total) AS revenue, count(*) AS orders
            FROM orders o JOIN products p ON p.id = o.product_id GROUP BY p.category_id)
        SELECT c.slug, r.revenue, r.orders FROM cat_rev r JOIN categories c ON c.id = r.category_id
        ORDER BY r.revenue DESC, c.slug LIMIT 5"""),
    CorpusQuery("in_subquery", """
        SELECT count(*) FROM products WHERE id IN (SELECT product_id FROM inventory WHERE quantity > 400)"""),
    CorpusQuery("exists_correlated", """
        SELECT c.slug FROM categories c
        WHERE EXISTS (SELECT 1 FROM products p WHERE p.category_id = c.id AND p.price > 990) ORDER BY c.slug"""),
    CorpusQuery("left_join_inactive", """
        SELECT c.slug, count(p.id) AS inactive FROM categories c
        LEFT JOIN products p ON p.category_id = c.id AND NOT p.active GROUP BY c.slug ORDER BY c.slug"""),
    CorpusQuery("having_frequent_buyers", """
        SELECT user_id, count(*) AS n FROM orders GROUP BY user_id HAVING count(*) > 3
        ORDER BY n DESC, user_id LIMIT 10"""),
    CorpusQuery("filter_aggregate", """
        SELECT locale, count(*) FILTER (WHERE email_opt_in) AS opted, count(*) AS total
        FROM user_preferences GROUP BY locale ORDER BY locale"""),
    CorpusQuery("price_tiers_case", """
        SELECT CASE WHEN price >= 500 THEN 'premium' WHEN price >= 100 THEN 'mid' ELSE 'budget' END AS tier,
               count(*) FROM products GROUP BY 1 ORDER BY 1"""),
    CorpusQuery("unit_price_arithmetic", """
        SELECT o.id, o.total / o.quantity AS unit_price, p.price, o.total - p.price * o.quantity AS diff
        FROM orders o JOIN products p ON p.id = o.product_id WHERE o.id <= 10 ORDER BY o.id"""),
    CorpusQuery("union_all", """
        SELECT slug AS s FROM categories WHERE id < 3
        UNION ALL SELECT sku FROM products WHERE sku IN ('sku-1', 'sku-2') ORDER BY s"""),
    CorpusQuery("pagination_offset", "SELECT id, quantity FROM orders ORDER BY id LIMIT 10 OFFSET 100"),
    CorpusQuery("inventory_least_greatest", """
        SELECT product_id, GREATEST(quantity - reserved, 0) AS free, LEAST(quantity, 100) AS capped
        FROM inventory ORDER BY product_id LIMIT 10"""),
    CorpusQuery("audit_top_actors", """
        SELECT actor, count(*) FROM audit_logs WHERE action = 'login' GROUP BY actor
        ORDER BY count(*) DESC, actor LIMIT 5"""),
    # --- windows -----------------------------------------------------------------------
    CorpusQuery("rank_in_category", """
        SELECT sku, price, rank() OVER (PARTITION BY category_id ORDER BY price DESC) AS r
        FROM products WHERE category_id = 2 ORDER BY r, sku"""),
    CorpusQuery("running_total", """
        SELECT id, sum(total) OVER (ORDER BY id) AS running FROM orders WHERE id <= 20 ORDER BY id"""),
    CorpusQuery("lag_between_orders", """
        SELECT id, created_at, lag(created_at) OVER (ORDER BY id) AS prev FROM orders WHERE id <= 10 ORDER BY id"""),
    # --- DISTINCT ON -------------------------------------------------------------------
    CorpusQuery("latest_order_per_user", """
        SELECT DISTINCT ON (user_id) user_id, id, created_at FROM orders
        ORDER BY user_id, created_at DESC, id DESC LIMIT 50"""),
    CorpusQuery("cheapest_per_category", """
        SELECT DISTINCT ON (category_id) category_id, sku, price AS cheapest FROM products
        ORDER BY category_id, price, sku"""),
    # --- dates and times ---------------------------------------------------------------
    CorpusQuery("orders_per_day", """
        SELECT date_trunc('day', created_at) AS day, count(*) FROM orders
        WHERE created_at < '2024-07-01' GROUP BY 1 ORDER BY 1"""),
    CorpusQuery("revenue_per_month", """
        SELECT date_trunc('month', created_at) AS m, sum(total) AS revenue FROM orders
        GROUP BY date_trunc('month', created_at) ORDER BY m"""),
    CorpusQuery("orders_per_hour", """
        SELECT date_trunc('hour', created_at) AS h, count(*) FROM orders
        WHERE created_at < '2024-06-02' GROUP BY 1 ORDER BY 1"""),
    CorpusQuery("orders_per_week", """
        SELECT date_trunc('week', created_at) AS w, count(*) FROM orders
        WHERE created_at < '2024-07-01' GROUP BY 1 ORDER BY 1"""),
    CorpusQuery("extract_year_month", """
        SELECT extract(year FROM created_at) AS y, extract(month FROM created_at) AS m, count(*)
        FROM orders GROUP BY 1, 2 ORDER BY 1, 2"""),
    CorpusQuery("extract_dow", """
        SELECT extract(dow FROM created_at) AS dow, count(*) FROM orders
        WHERE created_at < '2024-07-01' GROUP BY 1 ORDER BY 1"""),
    CorpusQuery("extract_epoch", "SELECT id, extract(epoch FROM created_at) FROM orders ORDER BY id LIMIT 10"),
    CorpusQuery("due_date_interval", """
        SELECT id, created_at + interval '1 day' AS due, created_at - interval '90 minutes' AS before
        FROM orders ORDER BY id LIMIT 10"""),
    CorpusQuery("window_with_interval", """
        SELECT count(*) FROM orders
        WHERE created_at >= timestamptz '2024-06-01 00:00:00+00' + interval '12 hours'
          AND created_at < timestamptz '2024-06-02 00:00:00+00'"""),
    CorpusQuery("timestamptz_literal_offset", """
        SELECT count(*) FROM orders WHERE created_at < timestamptz '2024-06-01 12:00:00+02'"""),
    CorpusQuery("sessions_not_expiring_soon", """
        SELECT count(*) FROM sessions WHERE expires_at > now() + interval '1 year'"""),
    CorpusQuery("recent_orders_now", "SELECT count(*) FROM orders WHERE created_at > now() - interval '7 days'"),
    CorpusQuery("at_time_zone_utc", """
        SELECT id, created_at AT TIME ZONE 'UTC' AS utc FROM orders ORDER BY id LIMIT 5"""),
    CorpusQuery("cast_to_date", """
        SELECT count(*) FROM orders WHERE created_at::date = date '2024-06-02'"""),
    CorpusQuery("date_plus_days", """
        SELECT count(*) FROM orders WHERE created_at::date + 1 = date '2024-06-03'"""),
    CorpusQuery("published_latest", """
        SELECT slug, published_at FROM blog_posts WHERE published_at IS NOT NULL
        ORDER BY published_at DESC, id LIMIT 10"""),
    CorpusQuery("nulls_first", "SELECT slug FROM blog_posts ORDER BY published_at NULLS FIRST, id LIMIT 15"),
    # --- casts -------------------------------------------------------------------------
    CorpusQuery("casts", """
        SELECT id, total::int AS whole, quantity::text AS q, created_at::date AS d, total::numeric(10, 1) AS t1
        FROM orders ORDER BY id LIMIT 10"""),
    CorpusQuery("json_value_cast", """
        SELECT sku FROM products WHERE (attributes->>'weight_g')::int > 995 ORDER BY sku"""),
    CorpusQuery("bool_literal_cast", "SELECT count(*) FROM products WHERE active = 'yes'::boolean"),
    # --- strings -----------------------------------------------------------------------
    CorpusQuery("ilike_search", "SELECT sku, name FROM products WHERE name ILIKE 'PRODUCT 1%' ORDER BY sku LIMIT 15"),
    CorpusQuery("pad_and_slice", """
        SELECT lpad(id::text, 6, '0') AS code, rpad(sku, 10, '.') AS padded, lpad(sku, 3) AS cut,
               upper(name), length(description), left(sku, 3), right(sku, 2), substring(name from 1 for 4)
        FROM products ORDER BY sku LIMIT 10"""),
    CorpusQuery("concat_and_position", """
        SELECT sku || '-' || name AS label, position('-' in sku) AS dash FROM products ORDER BY sku LIMIT 5"""),
    CorpusQuery("string_agg_ordered", """
        SELECT category_id, string_agg(sku, ',' ORDER BY sku) FROM products WHERE category_id <= 3
        GROUP BY category_id ORDER BY category_id"""),
    CorpusQuery("e_string", r"SELECT E'tab\there' AS s, count(*) FROM categories"),
    # --- arrays and JSON ---------------------------------------------------------------
    CorpusQuery("array_to_string_tags", "SELECT slug, array_to_string(tags, '|') FROM blog_posts ORDER BY id LIMIT 10"),
    CorpusQuery("any_array_literal", "SELECT slug FROM blog_posts WHERE id = ANY(ARRAY[1, 2, 3, 5, 8]) ORDER BY slug"),
    CorpusQuery("any_array_column", "SELECT count(*) FROM blog_posts WHERE 'tag3' = ANY(tags)"),
    CorpusQuery("not_all_statuses", """
        SELECT count(*) FROM orders WHERE status::text <> ALL(ARRAY['cancelled', 'pending'])"""),
    CorpusQuery("array_length_and_index", """
        SELECT id, array_length(tags, 1), cardinality(tags), tags[1] FROM blog_posts ORDER BY id LIMIT 5"""),
    CorpusQuery("json_field_group", """
        SELECT attributes->>'color' AS color, count(*) FROM products GROUP BY 1 ORDER BY 1"""),
    CorpusQuery("json_nested_value", "SELECT sku, attributes->'tags' AS tags FROM products ORDER BY sku LIMIT 3"),
    CorpusQuery("enum_equality", "SELECT count(*) FROM orders WHERE status = 'paid'"),
    CorpusQuery("enum_order", "SELECT status, count(*) FROM orders GROUP BY status ORDER BY status"),
    CorpusQuery("enum_compare", "SELECT count(*) FROM orders WHERE status < 'shipped'"),
    CorpusQuery("enum_max", "SELECT user_id, max(status) FROM orders GROUP BY user_id ORDER BY user_id LIMIT 10"),
    CorpusQuery("split_part", "SELECT split_part(sku, '-', 2) FROM products ORDER BY sku LIMIT 3"),
    # --- reported untranslatable -------------------------------------------------------
    CorpusQuery("jsonb_containment", """SELECT count(*) FROM products WHERE attributes @> '{"color": "red"}'""",
                untranslatable=("unsupported_operator",)),
    CorpusQuery("full_text", """
        SELECT slug FROM blog_posts WHERE to_tsvector('english', body) @@ to_tsquery('lorem') LIMIT 5""",
                untranslatable=("fulltext",)),
    CorpusQuery("berlin_time", """
        SELECT id, created_at AT TIME ZONE 'Europe/Berlin' FROM orders ORDER BY id LIMIT 5""",
                untranslatable=("timezone",)),
    CorpusQuery("regex_match", "SELECT count(*) FROM products WHERE sku ~ '^sku-1[0-9]$'",
                untranslatable=("unsupported_operator",)),
    CorpusQuery("initcap", "SELECT initcap(name) FROM categories ORDER BY id LIMIT 3",
                untranslatable=("unsupported_function",)),
)
