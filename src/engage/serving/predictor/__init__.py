"""The predictor server: ``python -m engage.serving.predictor`` (see :mod:`._model`)."""

__all__: list[str] = []
