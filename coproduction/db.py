"""Storage through SQLAlchemy: a SQLite file under var/ by default, PostgreSQL with DATABASE_URL.

On PostgreSQL each service keeps its tables in its own schema (named after the service), so one
database can hold every service on a laptop and tests can run side by side; in production each
service gets a database of its own as well.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import BigInteger, Integer, create_engine, event, exc, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from . import jsonio

#: errors that mean "the database is not answering now", not "this request is wrong"
DB_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)

#: an auto-incrementing 64-bit key on PostgreSQL that SQLite also auto-increments
BigId = BigInteger().with_variant(Integer, "sqlite")


class Database:
    def __init__(self, url: str, schema: str | None = None, pool_size: int = 5, pre_ping: bool = False):
        """``pre_ping`` tests each pooled connection before use: one more round trip per
        transaction. Without it a connection that died (a database restart) fails its first use,
        which the request answers with 503 and Retry-After, and the pool drops every connection
        opened before that failure."""
        self.url = url
        self.schema = schema
        self.is_postgres = url.startswith("postgresql")
        if self.is_postgres:
            url = url.replace("postgresql://", "postgresql+psycopg://", 1)
            options = {}
            if schema:
                options["options"] = f"-csearch_path={schema}"
            pooled = dict(pool_size=pool_size, max_overflow=10, pool_pre_ping=pre_ping, pool_recycle=1800,
                          connect_args=options, json_deserializer=jsonio.loads)
            self.engine: Engine = create_engine(url, **pooled)
            # reading requests' connections are autocommit from their first connect, so a checkout
            # neither sets nor resets it (docs/performance.md)
            reading: Engine | None = create_engine(url, isolation_level="AUTOCOMMIT", **pooled)
        else:
            reading = None
            self.engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # SQLite opens a read transaction lazily; BEGIN IMMEDIATE makes writers queue up
            # instead of failing with "database is locked" halfway through a transaction.
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._requests = self.engine.execution_options(deferred_begin=True)
        self._reading_requests = reading or self._requests

    def drop_schema(self) -> None:
        if self.is_postgres and self.schema:
            with self.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def open(self, reading: bool = False) -> Connection:
        """A connection whose transaction begins with its first statement, which the caller commits
        or rolls back and closes: for one web request that reads and writes in a single transaction
        (SQLAlchemy Core: a request runs Core statements only, and spares an ORM session's
        bookkeeping; docs/performance.md). On SQLite it is a plain (deferred) transaction, so its
        reads do not hold the write lock for the request; a write there belongs in a
        :meth:`session` of its own.

        ``reading``: a request that only reads (and appends its audit record) gets, on PostgreSQL,
        a connection whose every statement commits by itself: no BEGIN and no COMMIT, two round
        trips fewer. It loses nothing: under READ COMMITTED each statement reads its own snapshot
        even inside a transaction, and a lone INSERT is durable when it returns."""
        return (self._reading_requests if reading else self._requests).connect()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
        if self._reading_requests is not self._requests:  # PostgreSQL: the reading engine's pool
            self._reading_requests.dispose()


class Prepared:
    """A Core statement compiled once and run on the connection's own psycopg cursor, for the few
    statements every audited read runs: they skip SQLAlchemy's work per execution (binding,
    wrapping the result; docs/performance.md). On SQLite SQLAlchemy runs it as usual. The
    row answered (or None) reads like SQLAlchemy's: ``row.name``."""

    def __init__(self, statement):
        self.statement = statement
        self._sql: tuple[str, dict] | None = None

    def run(self, session: Session | Connection, params: dict):
        """The one row it answers, or None."""
        rows = self.all(session, params)
        return rows[0] if rows else None

    def all(self, session: Session | Connection, params: dict) -> list:
        if isinstance(session, Connection):
            connection = session
            if not connection.in_transaction():  # begun as SQLAlchemy's would be, so commit() commits it
                connection.begin()
        else:
            connection = session.connection()
        if connection.dialect.name != "postgresql":
            return connection.execute(self.statement, params).all()
        if self._sql is None:
            compiled = self.statement.compile(dialect=connection.dialect)
            constants = {k: v for k, v in compiled.params.items() if v is not None}
            if compiled.literal_execute_params or compiled.post_compile_params:  # rendered into the SQL
                unbound = self.statement.params({name: None for name, bind in compiled.binds.items() if bind.required})
                compiled = unbound.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
            self._sql = compiled.string, constants
        sql, constants = self._sql
        driver = connection.connection.driver_connection
        try:
            with driver.cursor(row_factory=namedtuple_row) as cursor:
                cursor.execute(sql, {**constants, **params})
                return cursor.fetchall() if cursor.description else []
        except psycopg.Error as error:
            raise _as_sqlalchemy_error(connection, driver, sql, params, error) from error


def _as_sqlalchemy_error(connection: Connection, driver, sql: str, params: dict, error: Exception) -> Exception:
    """What SQLAlchemy makes of a driver's error, so callers see one kind (DB_UNAVAILABLE answers
    503); a lost connection is dropped with every other one the pool holds, as SQLAlchemy does."""
    if connection.dialect.is_disconnect(error, driver, None):
        connection.invalidate(error)
        connection.engine.dispose(close=False)
    return exc.DBAPIError.instance(sql, params, error, psycopg.Error, dialect=connection.dialect,
                                   connection_invalidated=connection.invalidated)


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("deferred_begin") else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn, _record):
    dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" listener issue BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
