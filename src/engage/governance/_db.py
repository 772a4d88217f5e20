"""The governance database: one engine per URL, Alembic migrations to head, one transaction per change.

SQLite (the default) is a file beside the registry, embedded, no set-up; PostgreSQL is production. The
same code and the same tests run on both. What differs is handled here and nowhere else:

- SQLite: WAL journal (readers never wait for the writer), foreign keys on, a busy timeout, and
  ``BEGIN IMMEDIATE`` so a writing transaction holds the write lock from its first statement (two
  appenders then queue instead of failing half-way).
- PostgreSQL: ``psycopg`` (v3); a pool that checks connections before use (a restarted server is not an
  error on the next request).

Every failure to reach the database or to commit is a :class:`~engage.errors.GovernanceError` (503)
naming the database without its password; the transaction is rolled back, so nothing is half-written.
SQLAlchemy and Alembic are imported when a database is opened, not when this module is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engage.errors import GovernanceError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

__all__ = ["Database", "open_database"]

_MIGRATIONS = Path(__file__).with_name("migrations")
_SECRET_KEY = "subject_key_secret"  # nosec B105 # the name of the row holding the generated secret
_OPEN: dict[str, Database] = {}
_OPEN_LOCK = threading.Lock()


def open_database(url: str | None = None, *, migrate: bool = True) -> Database:
    """The database at ``url`` (default: ``ENGAGE_GOVERNANCE_DATABASE_URL``, else the embedded SQLite
    file), migrated to the newest schema; one :class:`Database` per URL per process."""
    if url is None:
        from ._settings import GovernanceSettings

        url = GovernanceSettings().database_url
    with _OPEN_LOCK:
        db = _OPEN.get(url)
        if db is None:
            db = Database(url)
            if migrate:
                try:
                    db.migrate()
                except BaseException:
                    db.engine.dispose()
                    raise
            _OPEN[url] = db
        return db


class Database:
    """A governance database: its engine, its sessions, its migrations and its subject-key secret."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            parsed = make_url(url)
        except ArgumentError as e:
            raise GovernanceError(f"governance database URL {url!r}: {e}", http_status=400) from None
        self.url = parsed
        #: the URL without its password, for messages and logs
        self.name = parsed.render_as_string(hide_password=True)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        if self.sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {"pool_pre_ping": True, "future": True}
        if self.sqlite:
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        elif parsed.get_backend_name() == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            options["connect_args"] = {"connect_timeout": 10}
        try:
            from sqlalchemy import create_engine

            self.engine: Engine = create_engine(parsed, **options)
        except (ArgumentError, NoSuchModuleError, ImportError) as e:
            raise GovernanceError(
                f"governance database {self.name}: unsupported ({e}); use sqlite:///path or "
                "postgresql+psycopg://user@host/db",
                http_status=400,
            ) from None
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self._secret: bytes | None = None

    def __repr__(self) -> str:
        return f"Database({self.name!r})"

    # --- schema ----------------------------------------------------------------------------------------

    def migrate(self) -> str:
        """Bring the schema to the newest revision (Alembic), make the subject-key secret once; returns
        the revision. Safe to call from several processes at once: each step is one transaction."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        try:
            with self.engine.begin() as connection:
                if not self.sqlite:  # two processes migrating at once: the second waits, then finds head
                    from sqlalchemy import text

                    connection.execute(text("SELECT pg_advisory_xact_lock(724511018)"))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            self._ensure_secret()
        except GovernanceError:
            raise
        except Exception as e:
            raise self.unavailable(e) from None
        return self.revision()

    def revision(self) -> str:
        """The schema revision the database is at ('' before the first migration)."""
        from sqlalchemy import text

        try:
            with self.engine.connect() as connection:
                row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
        except Exception:
            return ""
        return "" if row is None else str(row[0])

    def _ensure_secret(self) -> None:
        from sqlalchemy.exc import IntegrityError

        from ._tables import Meta

        with self.session(readonly=True) as s:
            if (meta := s.get(Meta, _SECRET_KEY)) is not None:
                self._secret = bytes.fromhex(meta.value)
                return
        try:
            with self.session() as s:
                s.add(Meta(key=_SECRET_KEY, value=secrets.token_hex(32)))
        except GovernanceError as e:
            if not isinstance(e.__cause__, IntegrityError):
                raise  # another process made it first otherwise
        with self.session(readonly=True) as s:
            meta = s.get(Meta, _SECRET_KEY)
            self._secret = None if meta is None else bytes.fromhex(meta.value)

    # --- sessions --------------------------------------------------------------------------------------

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error.

        ``readonly``: on SQLite a plain ``BEGIN`` (a long read, such as verifying the trail, does not
        hold the write lock); writes in it fail.

        Database errors (down, refused, locked past the timeout, a constraint) become a
        :class:`GovernanceError` 503 with the cause kept; the caller's own errors pass through unchanged.
        """
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError
        from sqlalchemy.orm import Session

        bind = self.engine.execution_options(engage_readonly=True) if readonly else self.engine
        session = Session(bind, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except (DBAPIError, SQLAlchemyError) as e:
            session.rollback()
            raise self.unavailable(e) from e
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def unavailable(self, error: BaseException) -> GovernanceError:
        """The error a failed database operation becomes: 503, naming the database, never its password."""
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()
        first = cause[0] if cause else type(error).__name__
        return GovernanceError(
            f"governance database {self.name} failed: {type(error).__name__}: {first}", http_status=503
        )

    # --- pseudonyms ------------------------------------------------------------------------------------

    def subject_key(self, customer_id: str) -> str:
        """The keyed hash of a customer id (HMAC-SHA256 with this store's secret): it links a customer's
        audit records without the trail holding the id."""
        if self._secret is None:
            from ._tables import Meta

            with self.session(readonly=True) as s:  # a plain read: never waits behind a writer
                meta = s.get(Meta, _SECRET_KEY)
            if meta is None:
                raise GovernanceError(
                    f"governance database {self.name} is not migrated (no subject-key secret): run "
                    "`engage governance migrate`",
                    http_status=503,
                )
            self._secret = bytes.fromhex(meta.value)
        return hmac.new(self._secret, str(customer_id).encode(), hashlib.sha256).hexdigest()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        with _OPEN_LOCK:
            for url, db in list(_OPEN.items()):
                if db is self:
                    del _OPEN[url]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # the driver's own transaction handling off: SQLAlchemy's "begin" event issues BEGIN IMMEDIATE
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    readonly = connection.get_execution_options().get("engage_readonly", False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
