"""Data contracts: the typed definition of a customer table and the rules it must satisfy."""

from ._load import DEFAULT_CONTRACT, default_contract_path, describe_error, load_contract, parse_contract
from ._model import (
    Check,
    Column,
    ColumnType,
    Contract,
    Dimension,
    Distribution,
    EventTime,
    Remediation,
    Role,
    Rule,
    Severity,
    Target,
    Task,
    Timing,
)
from ._names import prohibited_matches

__all__ = [
    "DEFAULT_CONTRACT",
    "Check",
    "Column",
    "ColumnType",
    "Contract",
    "Dimension",
    "Distribution",
    "EventTime",
    "Remediation",
    "Role",
    "Rule",
    "Severity",
    "Target",
    "Task",
    "Timing",
    "default_contract_path",
    "describe_error",
    "load_contract",
    "parse_contract",
    "prohibited_matches",
]
