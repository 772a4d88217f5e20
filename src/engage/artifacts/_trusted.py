"""The allow-list of types a skops file may hold for :func:`engage.artifacts.load_sklearn` to load it."""

from __future__ import annotations

#: Every type a skops file may hold for :func:`load_sklearn` to load it: exactly what fitted
#: ``HistGradientBoostingRegressor`` (squared error) and ``HistGradientBoostingClassifier`` (binary log
#: loss), including pandas-categorical inputs with ``categorical_features="from_dtype"``,
#: ``IsotonicRegression`` and ``LogisticRegression`` need, as found with ``skops.io.get_untrusted_types``
#: and the file's schema on real fitted models.
TRUSTED_SKLEARN_TYPES: tuple[str, ...] = (
    # containers and values of the saved state
    "builtins.dict",
    "builtins.int",
    "builtins.list",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "numpy.float64",
    "numpy.ndarray",
    "numpy.uint64",
    # the feature-subsampling generator of histogram gradient boosting
    "numpy.random._generator.Generator",
    "numpy.random.PCG64",
    # the estimators
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.linear_model._logistic.LogisticRegression",
    # histogram gradient boosting internals: binning, trees, losses and their links
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn.preprocessing._label.LabelEncoder",
    # the preprocessor behind categorical_features="from_dtype"
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "functools.partial",
    "sklearn.utils.validation.check_array",
)
