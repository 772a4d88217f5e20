"""Realistic synthetic customer tables for Engage.

:func:`generate_customers` simulates a customer population (segments, signup cohorts, twelve
months of sessions, orders, fees, support contacts and plan changes, then a forward simulation for
the targets) and aggregates it to the columns of ``contracts/customers_contract.yml``, in the
contract's order and with its types. Optional knobs inject data-quality defects with ground truth,
bias against a protected group and drift in the latest cohort. See the private modules for the
simulation (``_population``), the personal columns (``_pii``), the defects (``_defects``) and the
column list (``_columns``, the only place in Engage that names the contract's columns).

Example::

    from datetime import UTC, datetime
    from engage.synthetic import DefectKind, SyntheticConfig, generate_customers

    table = generate_customers(
        SyntheticConfig(rows=10_000, seed=1, as_of=datetime(2024, 6, 30, tzinfo=UTC),
                        defects={DefectKind.bad_email: 0.01})
    )
    table.frame     # the customer table
    table.defects   # row, customer_id, kind, column of every spoiled row
"""

from engage.synthetic._config import DEFECT_CHECKS, DefectKind, SyntheticConfig
from engage.synthetic._generate import GeneratedTable, generate_customers

__all__ = ["DEFECT_CHECKS", "DefectKind", "GeneratedTable", "SyntheticConfig", "generate_customers"]
