"""Column roles for an AutoML job: the spec's overrides checked, every column's role decided
(``atlas_core.ml.ColumnRoleFeatures``, which the final models carry) and what deserves a
warning said."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from atlas_core.errors import InvalidArgument
from atlas_core.ml import ROLES, ColumnRoleFeatures
from atlas_core.ml._roles import DATETIME, IDENTIFIER, unknown_roles


def check_column_roles(
    overrides: Mapping[str, str], columns: Iterable[str], target: str = ""
) -> None:
    """Raise InvalidArgument naming the first override whose role is unknown (``UNKNOWN_ROLE``)
    or whose column is not a feature of the data (``UNKNOWN_COLUMN``)."""
    bad = unknown_roles(overrides)
    if bad:
        column, role = next(iter(bad.items()))
        raise InvalidArgument(
            f"automl.column_roles: role {role!r} of column {column!r} is unknown; "
            f"choose one of {', '.join(ROLES)}",
            reason="UNKNOWN_ROLE",
            metadata={"column": column, "role": role},
        )
    names = {str(c) for c in columns}
    for column in overrides:
        if column == target:
            raise InvalidArgument(
                f"automl.column_roles: column {column!r} is the target, not a feature",
                reason="UNKNOWN_COLUMN",
                metadata={"column": column},
            )
        if column not in names:
            raise InvalidArgument(
                f"automl.column_roles: column {column!r} is not in the dataset's features "
                f"(columns: {', '.join(sorted(names)[:20])})",
                reason="UNKNOWN_COLUMN",
                metadata={"column": column},
            )


def fit_column_roles(
    X: pd.DataFrame, overrides: Mapping[str, str]
) -> tuple[ColumnRoleFeatures, list[str]]:
    """The fitted roles of ``X``'s columns and the warnings they call for (dates that do not
    parse, identifiers dropped on the spec's word)."""
    check_column_roles(overrides, X.columns)
    roles = ColumnRoleFeatures(overrides).fit(X)
    warnings: list[str] = []
    for r in roles.roles_:
        if r.overridden and r.role == DATETIME and "do not parse" in r.detail:
            warnings.append(f"column {r.column!r} (datetime, set in the spec): {r.detail}")
        elif r.overridden and r.role == IDENTIFIER:
            warnings.append(f"dropped column {r.column!r}: identifier (set in the spec)")
    return roles, warnings
