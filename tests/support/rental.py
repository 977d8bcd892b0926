"""A second schema for the query corpus: a DVD-rental store (the common Sakila/Pagila shape, written here).

It has what the shop lacks: char(n) codes with blank padding, mixed-case and
non-ASCII names, enums used for ordering, intervals between timestamps with
microseconds, dates, numeric money, NULLs in ORDER BY columns, booleans,
text[] and jsonb, and nested views (a view on a view, joins, aggregates,
CASE), one materialized view and one view that cannot be translated.
Data is deterministic (seeded).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import psycopg

DDL = [
    "CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17')",
    "CREATE TYPE rental_status AS ENUM ('reserved', 'out', 'returned', 'lost')",
    """CREATE TABLE stores (
        id integer PRIMARY KEY,
        code character(6) NOT NULL UNIQUE,
        city text NOT NULL,
        opened_on date NOT NULL)""",
    """CREATE TABLE customers (
        id integer PRIMARY KEY,
        store_id integer NOT NULL REFERENCES stores (id),
        first_name text NOT NULL,
        last_name text NOT NULL,
        email text,
        country character(2) NOT NULL,
        active boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL)""",
    """CREATE TABLE films (
        id integer PRIMARY KEY,
        title text NOT NULL,
        rating mpaa_rating,
        rental_rate numeric(4,2) NOT NULL,
        replacement_cost numeric(5,2) NOT NULL,
        length_minutes integer,
        release_date date,
        tags text[] NOT NULL DEFAULT '{}',
        details jsonb,
        description text,
        search tsvector GENERATED ALWAYS AS (
            to_tsvector('english', coalesce(title, '') || ' ' || coalesce(description, ''))) STORED,
        CONSTRAINT films_rate_positive CHECK (rental_rate > 0))""",
    """CREATE TABLE inventory (
        id integer PRIMARY KEY,
        film_id integer NOT NULL REFERENCES films (id),
        store_id integer NOT NULL REFERENCES stores (id))""",
    """CREATE TABLE rentals (
        id integer PRIMARY KEY,
        inventory_id integer NOT NULL REFERENCES inventory (id) ON DELETE CASCADE,
        customer_id integer NOT NULL REFERENCES customers (id),
        status rental_status NOT NULL,
        rented_at timestamptz NOT NULL,
        returned_at timestamptz,
        due_on date NOT NULL)""",
    """CREATE TABLE payments (
        id integer PRIMARY KEY,
        rental_id integer NOT NULL REFERENCES rentals (id),
        amount numeric(6,2) NOT NULL,
        paid_at timestamptz NOT NULL)""",
    "CREATE INDEX rentals_customer ON rentals (customer_id, rented_at)",
    # nested views: a view on a view, joins, aggregates, CASE
    """CREATE VIEW film_catalog AS
        SELECT f.id, f.title, f.rating, f.rental_rate,
               CASE WHEN f.rental_rate >= 4 THEN 'premium' WHEN f.rental_rate >= 2 THEN 'standard'
                    ELSE 'bargain' END AS price_band,
               count(i.id) AS copies
        FROM films f LEFT JOIN inventory i ON i.film_id = f.id
        GROUP BY f.id, f.title, f.rating, f.rental_rate""",
    """CREATE VIEW rental_details AS
        SELECT r.id, r.customer_id, c.first_name || ' ' || c.last_name AS customer, fc.title, fc.price_band,
               r.status, r.rented_at, r.returned_at, r.returned_at - r.rented_at AS kept,
               s.code AS store_code
        FROM rentals r
        JOIN inventory i ON i.id = r.inventory_id
        JOIN film_catalog fc ON fc.id = i.film_id
        JOIN customers c ON c.id = r.customer_id
        JOIN stores s ON s.id = i.store_id""",
    """CREATE VIEW customer_value AS
        SELECT c.id, c.last_name, c.country, count(DISTINCT r.id) AS rentals, coalesce(sum(p.amount), 0) AS paid,
               CASE WHEN coalesce(sum(p.amount), 0) >= 40 THEN 'gold'
                    WHEN coalesce(sum(p.amount), 0) >= 15 THEN 'silver' ELSE 'bronze' END AS tier
        FROM customers c
        LEFT JOIN rentals r ON r.customer_id = c.id
        LEFT JOIN payments p ON p.rental_id = r.id
        GROUP BY c.id, c.last_name, c.country""",
    """CREATE VIEW gold_customers AS
        SELECT cv.id, cv.last_name, cv.paid, s.city
        FROM customer_value cv JOIN customers c ON c.id = cv.id JOIN stores s ON s.id = c.store_id
        WHERE cv.tier = 'gold'""",
    """CREATE VIEW store_report AS
        SELECT rd.store_code, count(*) AS rentals,
               count(*) FILTER (WHERE rd.status = 'lost') AS lost,
               sum(CASE WHEN rd.price_band = 'premium' THEN 1 ELSE 0 END) AS premium_rentals
        FROM rental_details rd GROUP BY rd.store_code""",
    "CREATE VIEW lettered_titles AS SELECT id, title FROM films WHERE title ~ '^[A-Z]'",
    """CREATE MATERIALIZED VIEW monthly_revenue AS
        SELECT date_trunc('month', paid_at) AS month, sum(amount) AS revenue FROM payments GROUP BY 1""",
]

FIRST = ["Ana", "anabel", "Björn", "Chloé", "dan", "Élodie", "Frank", "Grace", "hana", "Ian", "JUAN", "Kim",
         "Luis", "Mañuel", "nora", "Oscar", "Pia", "Quinn", "Rosa", "Sven"]
LAST = ["Smith", "o'neil", "García", "Müller", "Nguyen", "van Dijk", "Brown", "jones", "Da Silva", "Ng_Lee",
        "Stan%ton", "Olsen"]
WORDS = ["Academy", "dinosaur", "Ace", "Goldfinger", "adaptation", "Holes", "African", "Egg", "Agent", "Truman",
         "airplane", "Sierra", "Alabama", "Devil", "ALADDIN", "Calendar", "Alamo", "Videotape", "Ángel", "Éclair"]
ADJECTIVES = ["Epic", "Touching", "Boring", "Fateful", "Astounding", "Beautiful", "Intrepid", "Emotional"]
NOUNS = ["Drama", "Documentary", "Saga", "Story", "Display", "Panorama", "Yarn", "Reflection"]
ROLES = ["Dentist", "Mad Scientist", "Robot", "Explorer", "Feminist", "Monkey", "Pioneer", "Astronaut"]
VERBS = ["chase", "outrace", "battle", "succumb to", "find", "meet", "sink", "defeat"]
PLACES = ["Ancient India", "a Shark Tank", "a Baloon Factory", "the Gulf of Mexico", "Nigeria", "a Jet Boat"]
TAGS = ["Trailers", "Commentaries", "Deleted Scenes", "Behind the Scenes"]
RATINGS = ["G", "PG", "PG-13", "R", "NC-17", None]
BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def install(dsn: str, *, seed: int = 7) -> None:
    """Create the rental schema in ``dsn`` and fill it with deterministic rows."""
    rnd = random.Random(seed)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in DDL:
            conn.execute(statement)
        with conn.transaction():
            _fill(conn, rnd)
        conn.execute("REFRESH MATERIALIZED VIEW monthly_revenue")
        conn.execute("ANALYZE")


def _fill(conn: psycopg.Connection[Any], rnd: random.Random) -> None:
    stores = [(1, "LON", "London", dt.date(2019, 3, 1)), (2, "PAR01", "Paris", dt.date(2020, 7, 15)),
              (3, "BER", "Berlin", dt.date(2021, 1, 31))]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO stores VALUES (%s, %s, %s, %s)", stores)
        customers = []
        for i in range(1, 61):
            first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
            email = None if i % 9 == 0 else f"{first.lower()}.{last.lower().replace(' ', '')}{i}@Example.com"
            created = BASE - dt.timedelta(days=rnd.randint(0, 700), seconds=rnd.randint(0, 86399),
                                          microseconds=rnd.choice([0, 500000, 123456, 7]))
            customers.append((i, 1 + i % 3, first, last, email, ["GB", "FR", "DE", "U"][i % 4], i % 7 != 0,
                              created))
        cur.executemany("INSERT INTO customers VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", customers)
        films = []
        for i in range(1, 41):
            title = f"{WORDS[i % len(WORDS)]} {WORDS[(i * 3 + 1) % len(WORDS)]}"
            details = None if i % 6 == 0 else {"director": f"D{i % 5}", "awards": i % 4, "remastered": i % 2 == 0}
            films.append((i, title, RATINGS[i % len(RATINGS)], [0.99, 2.99, 4.99, 1.5, 3.25][i % 5],
                          9.99 + (i % 11) * 2, None if i % 10 == 0 else 46 + (i * 13) % 140,
                          None if i % 8 == 0 else dt.date(2000 + i % 24, 1 + i % 12, 1 + i % 28),
                          rnd.sample(TAGS, k=i % 3), json.dumps(details) if details else None,
                          None if i % 13 == 0 else
                          f"A {ADJECTIVES[i % 8]} {NOUNS[(i * 3) % 8]} of a {ROLES[i % 8]} who must "
                          f"{VERBS[(i * 5) % 8]} a {ROLES[(i * 7) % 8]} in {PLACES[i % 6]}"))
        cur.executemany("INSERT INTO films (id, title, rating, rental_rate, replacement_cost, length_minutes, "
                        "release_date, tags, details, description) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        films)
        inventory = [(i, 1 + (i * 7) % 40, 1 + i % 3) for i in range(1, 121)]
        cur.executemany("INSERT INTO inventory VALUES (%s, %s, %s)", inventory)
        rentals, payments = [], []
        for i in range(1, 401):
            rented = BASE + dt.timedelta(days=rnd.randint(0, 180), seconds=rnd.randint(0, 86399),
                                         microseconds=rnd.choice([0, 250000, 999999, 31]))
            status = rnd.choice(["reserved", "out", "returned", "returned", "returned", "lost"])
            returned = None
            if status == "returned":
                returned = rented + dt.timedelta(days=rnd.randint(0, 9), hours=rnd.randint(0, 23),
                                                 minutes=rnd.randint(0, 59), microseconds=rnd.choice([0, 1, 654321]))
            rentals.append((i, 1 + (i * 13) % 120, 1 + (i * 7) % 60, status, rented, returned,
                            (rented + dt.timedelta(days=3 + i % 5)).date()))
            if status in ("returned", "lost"):
                payments.append((i, i, [0.99, 2.99, 4.99, 5.98, 11.5][i % 5], rented + dt.timedelta(hours=1)))
        cur.executemany("INSERT INTO rentals VALUES (%s, %s, %s, %s, %s, %s, %s)", rentals)
        cur.executemany("INSERT INTO payments VALUES (%s, %s, %s, %s)", payments)
