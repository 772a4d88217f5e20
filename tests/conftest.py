"""Shared fixtures. Tests are marked by folder: tests/unit -> unit, tests/integration -> integration,
tests/e2e -> e2e (the `slow` marker is set by hand on the slowest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
TELCO_CONTRACT = ROOT / "contracts" / "examples" / "telco_contract.yml"
TELCO_TABLE = FIXTURES / "telco_customers.csv"
AS_OF = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
#: a validation time one hour after the generated snapshot: fresh
CHECKED_AT = AS_OF + timedelta(hours=1)


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
