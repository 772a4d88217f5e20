"""Model cards: what a model is, what it is for, how well and how fairly it works, from its artifacts.

``build_model_card`` reads the outputs of ``engage train`` (evaluation.json and the model bundle),
optionally of ``engage fairness`` (fairness.json and the chosen model) and global explanations, and
assembles the sections of "Model Cards for Model Reporting" (Mitchell et al., 2019) as typed data.
``write_model_card`` writes it as Markdown, a self-contained HTML page and JSON. See docs/model-card.md.
"""

from ._card import CARD_FORMAT, ModelCard, build_model_card
from ._outputs import CARD_FILES, write_model_card

__all__ = ["CARD_FILES", "CARD_FORMAT", "ModelCard", "build_model_card", "write_model_card"]
