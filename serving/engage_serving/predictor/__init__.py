"""The predictor server: ``python -m engage_serving.predictor`` (see :mod:`._model`)."""

__all__: list[str] = []
