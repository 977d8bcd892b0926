"""Real-world queries over the rental store (tests/support/rental.py), one per construct whose semantics differ.

Each runs on PostgreSQL and, translated with the types the replica recorded,
on the replica made by the real snapshot: equal, or refused with the named
finding codes in ``untranslatable``. ORDER BY lists are total (ties broken).
"""

from __future__ import annotations

from tests.query_corpus import CorpusQuery

RENTAL_CORPUS: tuple[CorpusQuery, ...] = (
    # --- LIKE / ILIKE ----------------------------------------------------------------------
    CorpusQuery("like_is_case_sensitive", "SELECT id, first_name FROM customers WHERE first_name LIKE '%an%' ORDER BY id"),
    CorpusQuery("like_prefix_upper", "SELECT count(*) FROM films WHERE title LIKE 'A%'"),
    CorpusQuery("not_like", "SELECT count(*) FROM customers WHERE last_name NOT LIKE '%s%'"),
    CorpusQuery("like_escape_default_backslash", "SELECT id FROM customers WHERE last_name LIKE 'Ng\\_%' ORDER BY id"),
    CorpusQuery("like_escape_clause", "SELECT id FROM customers WHERE last_name LIKE '%!%%' ESCAPE '!' ORDER BY id"),
    CorpusQuery("like_underscore_wildcard", "SELECT count(*) FROM customers WHERE last_name LIKE 'N_%'"),
    CorpusQuery("ilike_ascii", "SELECT id FROM films WHERE title ILIKE '%academy%' ORDER BY id"),
    CorpusQuery("ilike_email_domain", "SELECT count(*) FROM customers WHERE email ILIKE '%@example.com'"),
    CorpusQuery("like_parameter_refused", "SELECT id FROM customers WHERE first_name LIKE first_name || '%'",
                untranslatable=("like_case",)),
    # --- char(n) ---------------------------------------------------------------------------
    CorpusQuery("char_equality_ignores_padding", "SELECT id, city FROM stores WHERE code = 'LON' ORDER BY id"),
    CorpusQuery("char_padded_literal", "SELECT count(*) FROM customers WHERE country = 'U '"),
    CorpusQuery("char_to_text_trims", "SELECT code::text || '|' AS shown, length(code) FROM stores ORDER BY id"),
    CorpusQuery("char_group_by", "SELECT country, count(*) FROM customers GROUP BY country ORDER BY country"),
    CorpusQuery("char_join_text", """
        SELECT s.code, count(*) FROM customers c JOIN stores s ON s.id = c.store_id
        WHERE s.code IN ('LON', 'BER') GROUP BY s.code ORDER BY s.code"""),
    CorpusQuery("char_output_keeps_padding", "SELECT code FROM stores ORDER BY code"),
    # --- date and time arithmetic ----------------------------------------------------------
    CorpusQuery("interval_between_timestamps", """
        SELECT id, returned_at - rented_at AS kept FROM rentals WHERE returned_at IS NOT NULL ORDER BY id"""),
    CorpusQuery("interval_compared_with_literal", """
        SELECT count(*) FROM rentals WHERE returned_at - rented_at > interval '3 days'"""),
    CorpusQuery("interval_between_literals", """
        SELECT count(*) FROM rentals WHERE returned_at - rented_at BETWEEN interval '1 day' AND interval '2 days 12 hours'"""),
    CorpusQuery("interval_order_by", """
        SELECT id FROM rentals WHERE returned_at IS NOT NULL ORDER BY returned_at - rented_at DESC, id LIMIT 10"""),
    CorpusQuery("integer_times_interval", """
        SELECT id, rented_at + (id % 5) * interval '1 day' AS due FROM rentals ORDER BY id"""),
    CorpusQuery("timestamp_plus_interval_literal", """
        SELECT id, rented_at + interval '2 days 3 hours', rented_at - interval '1 month' FROM rentals ORDER BY id"""),
    CorpusQuery("extract_second_and_truncations", """
        SELECT id, extract(second from rented_at), date_trunc('hour', rented_at), date_trunc('day', rented_at),
               extract(epoch from rented_at) FROM rentals ORDER BY id"""),
    CorpusQuery("integer_times_interval_compare", """
        SELECT count(*) FROM rentals WHERE returned_at - rented_at < 2 * interval '1 day'"""),
    CorpusQuery("date_minus_date", "SELECT id, due_on - rented_at::date AS days FROM rentals ORDER BY id LIMIT 20"),
    CorpusQuery("date_minus_date_filter", "SELECT count(*) FROM rentals WHERE due_on - rented_at::date >= 5"),
    CorpusQuery("date_plus_integer", "SELECT id, due_on + 7 AS grace FROM rentals ORDER BY id LIMIT 5"),
    CorpusQuery("avg_min_max_interval", """
        SELECT status, avg(returned_at - rented_at) AS avg_kept, min(returned_at - rented_at) AS shortest,
               max(returned_at - rented_at) AS longest
        FROM rentals WHERE returned_at IS NOT NULL GROUP BY status ORDER BY status"""),
    CorpusQuery("avg_interval_per_customer", """
        SELECT customer_id, avg(returned_at - rented_at) AS avg_kept FROM rentals
        WHERE returned_at IS NOT NULL GROUP BY customer_id ORDER BY customer_id LIMIT 15"""),
    CorpusQuery("extract_epoch_from_interval", """
        SELECT id, extract(epoch from returned_at - rented_at) AS seconds FROM rentals
        WHERE returned_at IS NOT NULL ORDER BY id LIMIT 15"""),
    CorpusQuery("extract_epoch_sum_hours", """
        SELECT round(sum(extract(epoch from returned_at - rented_at)) / 3600, 2) AS hours FROM rentals"""),
    CorpusQuery("customers_joined_last_30_days_of_2023", """
        SELECT count(*) FROM customers WHERE created_at > timestamptz '2024-01-01 00:00:00+00' - interval '30 days'"""),
    CorpusQuery("interval_in_subquery_refused", """
        SELECT max(kept) FROM (SELECT returned_at - rented_at AS kept FROM rentals) k""",
                untranslatable=("interval_seconds",)),
    # --- enums -------------------------------------------------------------------------------
    CorpusQuery("enum_order_by", "SELECT id, rating FROM films ORDER BY rating, id"),
    CorpusQuery("enum_order_desc", "SELECT id, status FROM rentals ORDER BY status DESC, id LIMIT 30"),
    CorpusQuery("enum_range_compare", "SELECT count(*) FROM films WHERE rating >= 'PG-13'"),
    CorpusQuery("enum_between", "SELECT count(*) FROM films WHERE rating BETWEEN 'PG' AND 'R'"),
    CorpusQuery("enum_max_per_customer", """
        SELECT customer_id, max(status) AS furthest FROM rentals GROUP BY customer_id ORDER BY customer_id LIMIT 20"""),
    # --- numeric stored as text ------------------------------------------------------------
    CorpusQuery("numeric_order", "SELECT id, rental_rate FROM films ORDER BY rental_rate DESC, id LIMIT 15"),
    CorpusQuery("numeric_compare", "SELECT count(*) FROM films WHERE rental_rate < 3"),
    CorpusQuery("numeric_sum_avg", """
        SELECT sum(amount) AS total, avg(amount) AS mean, min(amount), max(amount) FROM payments"""),
    CorpusQuery("numeric_group_totals", """
        SELECT r.customer_id, sum(p.amount) AS paid FROM payments p JOIN rentals r ON r.id = p.rental_id
        GROUP BY r.customer_id ORDER BY paid DESC, r.customer_id LIMIT 10"""),
    # --- string functions ------------------------------------------------------------------
    CorpusQuery("position_and_strpos", """
        SELECT id, position('a' in title) AS p, strpos(lower(title), 'e') AS s FROM films ORDER BY id LIMIT 15"""),
    CorpusQuery("split_part_email", """
        SELECT id, split_part(email, '@', 2) AS domain, split_part(email, '.', 1) AS head FROM customers ORDER BY id"""),
    CorpusQuery("regex_substring_refused", "SELECT substring(title from '[A-Z][a-z]+') FROM films",
                untranslatable=("regex_substring",)),
    CorpusQuery("initcap_refused", "SELECT initcap(first_name) FROM customers", untranslatable=("unsupported_function",)),
    CorpusQuery("string_agg_ordered", """
        SELECT store_id, string_agg(first_name, ', ' ORDER BY first_name, id) AS names FROM customers
        WHERE id <= 20 GROUP BY store_id ORDER BY store_id"""),
    CorpusQuery("string_agg_desc", """
        SELECT string_agg(title, ' / ' ORDER BY id DESC) FROM films WHERE id <= 6"""),
    # --- other -------------------------------------------------------------------------------
    CorpusQuery("nulls_last_ascending", "SELECT id, length_minutes FROM films ORDER BY length_minutes, id"),
    CorpusQuery("nulls_first_descending", "SELECT id, release_date FROM films ORDER BY release_date DESC, id"),
    CorpusQuery("nulls_explicit", "SELECT id, email FROM customers ORDER BY email NULLS FIRST, id LIMIT 10"),
    CorpusQuery("integer_division", """
        SELECT id, length_minutes / 60 AS hours, length_minutes % 60 AS minutes, -length_minutes / 7 AS neg
        FROM films ORDER BY id"""),
    CorpusQuery("integer_division_of_counts", """
        SELECT store_id, count(*) / 7 AS weeks FROM customers GROUP BY store_id ORDER BY store_id"""),
    CorpusQuery("boolean_output", "SELECT id, active, NOT active AS inactive FROM customers ORDER BY id LIMIT 10"),
    CorpusQuery("boolean_filter_count", "SELECT active, count(*) FROM customers GROUP BY active ORDER BY active"),
    CorpusQuery("json_field", """
        SELECT details->>'director' AS director, count(*) FROM films GROUP BY 1 ORDER BY 1 NULLS LAST"""),
    CorpusQuery("array_length_tags", "SELECT id, cardinality(tags) FROM films ORDER BY id LIMIT 10"),
    CorpusQuery("full_text_refused", """
        SELECT id FROM films WHERE to_tsvector('english', title) @@ to_tsquery('english', 'academy')""",
                untranslatable=("fulltext",)),
    # --- reports -----------------------------------------------------------------------------
    CorpusQuery("top_renters_window", """
        SELECT customer_id, n, rank() OVER (ORDER BY n DESC) AS r FROM (
            SELECT customer_id, count(*) AS n FROM rentals GROUP BY customer_id) c ORDER BY r, customer_id LIMIT 10"""),
    CorpusQuery("revenue_by_rating_cte", """
        WITH paid AS (
            SELECT f.rating, p.amount FROM payments p JOIN rentals r ON r.id = p.rental_id
            JOIN inventory i ON i.id = r.inventory_id JOIN films f ON f.id = i.film_id)
        SELECT rating, count(*) AS n, sum(amount) AS revenue FROM paid GROUP BY rating ORDER BY rating"""),
    CorpusQuery("overdue_open_rentals", """
        SELECT r.id, c.last_name, date '2024-07-01' - r.due_on AS days_late FROM rentals r
        JOIN customers c ON c.id = r.customer_id
        WHERE r.status = 'out' AND r.due_on < date '2024-07-01' ORDER BY days_late DESC, r.id LIMIT 15"""),
    CorpusQuery("view_gold_customers", "SELECT id, last_name, city FROM gold_customers ORDER BY id"),
    CorpusQuery("view_store_report", "SELECT store_code, rentals, lost FROM store_report ORDER BY store_code"),
    CorpusQuery("view_rental_details_kept", """
        SELECT customer, title, kept FROM rental_details WHERE kept IS NOT NULL ORDER BY id LIMIT 10"""),
)
