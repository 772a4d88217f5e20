"""Writing a card: the Markdown, the HTML page and the JSON data, together or not at all."""

from __future__ import annotations

from pathlib import Path

from engage._io import replace_dir, staging_dir, write_text_atomic
from engage.errors import ConfigError

from ._card import ModelCard

__all__ = ["CARD_FILES", "write_model_card"]

CARD_FILES = {"markdown": "model_card.md", "html": "model_card.html", "json": "model_card.json"}


def write_model_card(card: ModelCard, out_dir: Path) -> dict[str, Path]:
    """Render every form first, then write them into a staging folder moved to ``out_dir`` in one rename.

    A rendering error leaves ``out_dir`` as it was (no half-written card, an older card intact). The card
    replaces the whole folder, so a folder holding anything but a card is refused rather than emptied.
    """
    out_dir = Path(out_dir)
    foreign = (
        sorted(p.name for p in out_dir.iterdir() if p.name not in CARD_FILES.values())
        if out_dir.is_dir()
        else []
    )
    if foreign:
        raise ConfigError(
            f"{out_dir}: holds other files ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): "
            "write the card into its own folder"
        )
    texts = {
        CARD_FILES["markdown"]: card.to_markdown(),
        CARD_FILES["html"]: card.to_html(),
        CARD_FILES["json"]: card.to_json(),
    }
    with staging_dir(out_dir) as stage:
        for name, text in texts.items():
            write_text_atomic(stage / name, text)
        replace_dir(stage, out_dir)
    return {kind: out_dir / name for kind, name in CARD_FILES.items()}
