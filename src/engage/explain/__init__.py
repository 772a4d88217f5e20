"""Explanations of Engage models, one result schema for every method.

* :class:`Explainer`: explain rows of a table for one head by ``tree_shap`` (exact, xgboost's own),
  ``kernel_shap`` and ``anchors`` (alibi, BSL 1.1, optional), ``lime``, ``counterfactual`` (DiCE)
  or ``reasons`` (plain-language reason codes from the attributions).
* :func:`global_summary`: mean |SHAP| and permutation importance per head, for the model card.
* :func:`customer_explanation`: the right-to-explanation document of one customer.

Every result is an :class:`Explanation` (``{"data": ..., "meta": ...}``). Which methods may serve is
decided in one place (:func:`check_method`): ``ENGAGE_EXPLAIN_LICENCE_CLEAN=true`` keeps the alibi
methods out. Heavy libraries are imported inside the methods that use them.
"""

from ._document import CustomerExplanation, customer_explanation
from ._explainer import MAX_ROWS, Explainer
from ._global import global_summary
from ._methods import LICENCE_CLEAN, METHODS, Method, available_methods, check_method
from ._reasons import describe_value, display_name, reason_codes
from ._schema import Explanation, ExplanationMeta, Timings
from ._settings import ExplainSettings
from ._tree import ADDITIVITY_TOLERANCE, TreeShap

__all__ = [
    "ADDITIVITY_TOLERANCE",
    "LICENCE_CLEAN",
    "MAX_ROWS",
    "METHODS",
    "CustomerExplanation",
    "ExplainSettings",
    "Explainer",
    "Explanation",
    "ExplanationMeta",
    "Method",
    "Timings",
    "TreeShap",
    "available_methods",
    "check_method",
    "customer_explanation",
    "describe_value",
    "display_name",
    "global_summary",
    "reason_codes",
]
