"""Create the PostgreSQL database named in a DATABASE_URL if it is missing.

Used by `make test` and CI so a fresh machine needs no manual step.
"""

from __future__ import annotations

import sys
from urllib.parse import urlparse

import psycopg2
from psycopg2 import sql


def ensure_database(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        print(f"not PostgreSQL ({parsed.scheme or 'empty'}): nothing to create")
        return
    name = parsed.path.lstrip("/")
    connection = psycopg2.connect(
        dbname="postgres",
        user=parsed.username or "postgres",
        password=parsed.password,
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")
    connection.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ensure_db.py DATABASE_URL")
    ensure_database(sys.argv[1])
