"""The explanation methods Engage offers, the library and licence behind each, and who may use them.

alibi (KernelSHAP, anchors) is under the Business Source License 1.1, not an OSI licence. It is an
optional extra (``engage[alibi]``) and every use of it goes through this registry: with
``ENGAGE_EXPLAIN_LICENCE_CLEAN=true``, or when alibi is not installed, the licence-clean set (TreeSHAP,
LIME, DiCE counterfactuals, reason codes, permutation importance) serves alone and an alibi method is
refused with a message that says why.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

from engage.errors import ExplainError

from ._settings import ExplainSettings

__all__ = [
    "LICENCE_CLEAN",
    "METHODS",
    "Method",
    "available_methods",
    "check_method",
]


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    library: str
    #: the Python modules that must be importable
    modules: tuple[str, ...]
    licence: str
    #: False for exact TreeSHAP, which reads xgboost's trees
    model_agnostic: bool = True

    @property
    def osi(self) -> bool:
        return not self.licence.startswith("BSL")


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "tree_shap",
            "exact TreeSHAP attributions (xgboost pred_contribs)",
            "xgboost",
            ("xgboost",),
            "Apache-2.0",
            model_agnostic=False,
        ),
        Method("kernel_shap", "KernelSHAP attributions, sampled", "alibi", ("alibi", "shap"), "BSL-1.1"),
        Method("anchors", "if-then rules that pin the prediction", "alibi", ("alibi",), "BSL-1.1"),
        Method("lime", "local linear surrogate", "lime", ("lime",), "BSD-2-Clause"),
        Method("counterfactual", "smallest changes reaching a target", "dice-ml", ("dice_ml",), "MIT"),
        Method(
            "reasons",
            "top factors in plain language (from TreeSHAP, else KernelSHAP)",
            "engage",
            ("xgboost",),
            "Apache-2.0",
        ),
    )
}

#: the methods that serve when only OSI licences are allowed
LICENCE_CLEAN = tuple(name for name, m in METHODS.items() if m.osi)

UNKNOWN_METHOD = "unknown explanation method {method!r}; known: {known}"
NEEDS_XGBOOST = (
    "{method} reads xgboost trees; head {head} is a {learner} model: use kernel_shap or lime for it"
)
LICENCE_REFUSED = (
    "{method} uses {library} ({licence}, not an OSI licence) and ENGAGE_EXPLAIN_LICENCE_CLEAN is set; "
    "methods allowed: {allowed}"
)
NOT_INSTALLED = "{method} needs {modules}, not installed here (pip install 'engage[alibi]' adds them)"


@functools.cache
def _installed(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def available_methods(settings: ExplainSettings) -> list[str]:
    """Methods this installation may serve under ``settings`` (installed, and licence-clean if asked)."""
    return [
        name for name, m in METHODS.items() if (m.osi or not settings.licence_clean) and _installed(m.modules)
    ]


def check_method(method: str, settings: ExplainSettings, *, learner: str, head: str) -> Method:
    """The method, or :class:`ExplainError` saying exactly why it cannot serve this head."""
    m = METHODS.get(method)
    if m is None:
        raise ExplainError(UNKNOWN_METHOD.format(method=method, known=", ".join(METHODS)))
    if not m.osi and settings.licence_clean:
        raise ExplainError(
            LICENCE_REFUSED.format(
                method=method, library=m.library, licence=m.licence, allowed=", ".join(LICENCE_CLEAN)
            )
        )
    if not _installed(m.modules):
        raise ExplainError(NOT_INSTALLED.format(method=method, modules=" and ".join(m.modules)))
    if not m.model_agnostic and learner != "xgboost":
        raise ExplainError(NEEDS_XGBOOST.format(method=method, head=head, learner=learner))
    return m
