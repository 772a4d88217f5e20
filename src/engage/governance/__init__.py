"""Governance: the audit trail, human review with overrides, data-subject rights, on one database.

SQLite by default (embedded), PostgreSQL in production; SQLAlchemy 2 models, Alembic migrations. See
``docs/governance.md`` for the flows.
"""

from ._audit import GENESIS, AuditEntry, AuditTrail, Hold, NewRecord, Problem, PurgeResult, VerifyReport
from ._db import Database, open_database
from ._review import NewReviewItem, ReviewItemView, ReviewQueue
from ._runs import RunOutputs
from ._settings import DEFAULT_DATABASE_URL, GovernanceSettings
from ._subjects import CustomerRecords, SubjectRights
from ._tokens import ROLES, TokenInfo, Tokens

__all__ = [
    "DEFAULT_DATABASE_URL",
    "GENESIS",
    "ROLES",
    "AuditEntry",
    "AuditTrail",
    "CustomerRecords",
    "Database",
    "GovernanceSettings",
    "Hold",
    "NewRecord",
    "NewReviewItem",
    "Problem",
    "PurgeResult",
    "ReviewItemView",
    "ReviewQueue",
    "RunOutputs",
    "SubjectRights",
    "TokenInfo",
    "Tokens",
    "VerifyReport",
    "open_database",
]
