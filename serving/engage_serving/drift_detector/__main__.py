"""``python -m engage_serving.drift_detector``: see :func:`engage_serving.drift_detector.main`."""

from __future__ import annotations

from engage_serving.drift_detector._model import main

if __name__ == "__main__":
    raise SystemExit(main())
