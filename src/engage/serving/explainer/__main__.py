"""``python -m engage.serving.explainer``: see :func:`engage.serving.explainer.main`."""

from __future__ import annotations

from engage.serving.explainer._model import main

if __name__ == "__main__":
    raise SystemExit(main())
