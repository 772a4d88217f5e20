"""Shared fixtures. Tests are marked by folder: tests/unit -> unit, tests/integration -> integration,
tests/e2e -> e2e (the `slow` marker is set by hand on the slowest)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
TELCO_CONTRACT = ROOT / "contracts" / "examples" / "telco_contract.yml"
TELCO_TABLE = FIXTURES / "telco_customers.csv"
AS_OF = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
#: a validation time one hour after the generated snapshot: fresh
CHECKED_AT = AS_OF + timedelta(hours=1)


def pytest_configure(config: pytest.Config) -> None:
    # every part of Engage records to the governance store (registry, promotion, review): the tests'
    # default is a SQLite file of this session, never the working copy's artifacts/governance.db
    if "ENGAGE_GOVERNANCE_DATABASE_URL" not in os.environ:
        folder = tempfile.mkdtemp(prefix="engage-governance-")
        os.environ["ENGAGE_GOVERNANCE_DATABASE_URL"] = f"sqlite:///{folder}/governance.db"
    # registry versions are signed: with no key configured, by a development key generated on first use;
    # the tests' is this session's (inherited by every server and CLI process), never artifacts/signing
    if "ENGAGE_SIGNING_DEV_DIR" not in os.environ:
        os.environ["ENGAGE_SIGNING_DEV_DIR"] = tempfile.mkdtemp(prefix="engage-signing-")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts[0]
        if layer in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def contract():  # type: ignore[no-untyped-def]
    from engage.contract import load_contract

    return load_contract()


@pytest.fixture(scope="session")
def telco_contract():  # type: ignore[no-untyped-def]
    from engage.contract import load_contract

    return load_contract(TELCO_CONTRACT)


@pytest.fixture(scope="session")
def clean():  # type: ignore[no-untyped-def]
    """3,000 generated customers without defects (shared: never modify it, copy first)."""
    from engage.synthetic import SyntheticConfig, generate_customers

    return generate_customers(SyntheticConfig(rows=3_000, seed=11, as_of=AS_OF))


@pytest.fixture(scope="session")
def spoiled():  # type: ignore[no-untyped-def]
    """4,000 generated customers with 1 % of rows spoiled by each defect kind."""
    from engage.synthetic import DefectKind, SyntheticConfig, generate_customers

    return generate_customers(
        SyntheticConfig(rows=4_000, seed=12, as_of=AS_OF, defects=dict.fromkeys(DefectKind, 0.01))
    )


@pytest.fixture(scope="session")
def panel():  # type: ignore[no-untyped-def]
    """4,000 generated customers in 4 monthly extracts, without defects: a training table."""
    from engage.synthetic import SyntheticConfig, generate_customers

    return generate_customers(SyntheticConfig(rows=4_000, seed=13, as_of=AS_OF, snapshots=4))


# --- the governance store on both databases ---------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A real PostgreSQL server on loopback for the session (started on first use), or None when this
    machine has none (``tests/postgres_support.py``)."""
    from tests.postgres_support import pg_bindir, postgres_server

    given = os.environ.get("ENGAGE_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    if pg_bindir() is None:
        yield None
        return
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def governance_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty governance database: a SQLite file, then a database on the PostgreSQL server (the
    same test runs on both)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/governance.db"
        return
    from tests.postgres_support import required

    admin = request.getfixturevalue("postgres_admin_url")
    if admin is None:
        message = "no PostgreSQL on this machine (apt-get install postgresql, or ENGAGE_TEST_POSTGRES_URL)"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"engage_{uuid.uuid4().hex[:16]}"
    admin_url = make_url(admin)
    conninfo = admin_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def governance_db(governance_url: str) -> Iterator[Any]:
    """The governance :class:`~engage.governance.Database` at ``governance_url``, migrated."""
    from engage.governance import open_database

    db = open_database(governance_url)
    try:
        yield db
    finally:
        db.dispose()
