"""``python -m engage_serving.explainer``: see :func:`engage_serving.explainer.main`."""

from __future__ import annotations

from engage_serving.explainer._model import main

if __name__ == "__main__":
    raise SystemExit(main())
