"""The predictor a bundle rebuilds: schema checks in front of the fitted model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.bundles._contributions import raw_contributions, select_class
from atlas_core.bundles._schema import InputSchema
from atlas_core.errors import InvalidArgument


class Predictor:
    """Predictions from a bundle's model behind its input schema.

    Every method validates and normalises its input with :meth:`validate_input` first, so the
    model always sees the training columns, in order, with training dtypes. Thread-safe as far
    as the model's ``predict`` is (scikit-learn, XGBoost and LightGBM predictors are).

    Raises (every method): ``InvalidArgument`` naming missing or mistyped columns.
    """

    def __init__(
        self, model: Any, schema: InputSchema, *, task: str, classes: Sequence[Any]
    ) -> None:
        self.model = model
        self.schema = schema
        self.task = task
        self.classes = list(classes)

    def validate_input(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` as the model expects it (extra columns dropped, order and dtypes fixed)."""
        return self.schema.normalise(frame)

    def check_schema_compatible(
        self, features: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> None:
        """Deploy-time check of (feature name, type) pairs against the input schema.

        Raises:
            FailedPrecondition: reason ``SCHEMA_INCOMPATIBLE``, naming every problem.
        """
        self.schema.check_compatible(features)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Class labels (classification) or values (regression), one per row."""
        return np.asarray(self.model.predict(self.validate_input(frame)))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray | None:
        """``[n, n_classes]`` probabilities in the order of ``classes``; None for regression."""
        if self.task == "regression":
            return None
        return np.asarray(self.model.predict_proba(self.validate_input(frame)))

    def contributions(
        self, frame: pd.DataFrame, *, target_class: Any = None
    ) -> tuple[np.ndarray, list[str]] | None:
        """Per-feature contributions ``([n, k+1] values, k names)``, bias in the last column,
        in raw model output units (log-odds for classifiers); None when the model cannot
        provide them (then callers fall back to permutation-based explanations).

        Binary models explain the positive class (``classes[1]``). Multiclass models explain
        ``target_class`` when given, else each row's predicted class.

        Raises:
            InvalidArgument: also when ``target_class`` is not one of ``classes``.
        """
        features = self.validate_input(frame)
        result = raw_contributions(self.model, features)
        if result is None:
            return None
        values, names = result
        if values.ndim == 3:
            values = select_class(values, self._class_index(features, target_class))
        return values, names

    def _class_index(self, features: pd.DataFrame, target_class: Any) -> np.ndarray | int:
        if target_class is not None and target_class != "":
            wanted = [str(label) for label in self.classes]
            if str(target_class) not in wanted:
                raise InvalidArgument(
                    f"target class {target_class!r} is not one of the model's classes "
                    f"{self.classes}",
                    reason="UNKNOWN_CLASS",
                )
            return wanted.index(str(target_class))
        return np.asarray(self.model.predict_proba(features)).argmax(axis=1)
