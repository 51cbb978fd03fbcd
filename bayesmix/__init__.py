"""bayesmix: Bayesian and ML/REML mixed-effects models from lme4-style formulas.

>>> import bayesmix as bmx
>>> model = bmx.lmm("Reaction ~ Days + (Days | Subject)", bmx.load_dataset("sleepstudy"))
>>> ml = model.fit()                      # REML, agrees with lme4
>>> post = model.sample(random_seed=1)    # NUTS posterior (nutpie)

Public names are loaded on first use, so ``import bayesmix`` stays quick and
never imports PyMC.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import errors
from .errors import (
    ArgumentError,
    BayesmixWarning,
    CacheWarning,
    ComparisonError,
    ConvergenceWarning,
    DataError,
    DataWarning,
    FitError,
    FormulaError,
    PriorError,
    SamplingWarning,
    SingularFitWarning,
)
from .model import LinearMixedModel, gls, lmm

__version__ = "0.1.0"

# name -> module that defines it, imported lazily by __getattr__.
_LAZY = {
    "nlmm": "nonlinear_model",
    "nls": "nls_model",
    "glmm": "glmm_model",
    "GeneralizedLinearMixedModel": "glmm_model",
    "NonlinearMixedModel": "nonlinear_model",
    "load_dataset": "datasets",
    "list_datasets": "datasets",
    "anova": "ml.compare",
    "aic_table": "ml.compare",
    "pbmodcomp": "inference.pbtest",
    "ranova": "inference.ranova",
    "select_random": "inference.selection",
    "MLResult": "ml.results",
    "BayesResult": "bayes.results",
    "Normal": "bayes.priors",
    "StudentT": "bayes.priors",
    "HalfNormal": "bayes.priors",
    "HalfStudentT": "bayes.priors",
    "Exponential": "bayes.priors",
    "LKJ": "bayes.priors",
    "Uniform": "bayes.residual_priors",
    "Beta": "bayes.residual_priors",
    "LogNormal": "bayes.residual_priors",
    "plot_ranef": "plotting",
    "plot_qq": "plotting_qq",
    "plot_residuals": "plotting_qq",
    "plot_coefficients": "plotting",
    "plot_ppc": "plotting_ppc",
    "plot_effects": "plotting_effects",
    "plot_individuals": "plotting_effects",
    "acf": "residual_diagnostics",
    "variogram": "residual_diagnostics",
    "plot_acf": "plotting_residuals",
    "plot_variogram": "plotting_residuals",
    "load": "io",
    # nlme's residual variance functions (weights=) and correlation structures (correlation=)
    "varIdent": "spec.variance_functions",
    "varPower": "spec.variance_functions",
    "varExp": "spec.variance_functions",
    "varConstPower": "spec.variance_functions",
    "varFixed": "spec.variance_functions",
    "varComb": "spec.variance_functions",
    "corAR1": "spec.correlation_structures",
    "corCAR1": "spec.correlation_structures",
    "corARMA": "spec.correlation_structures",
    "corCompSymm": "spec.correlation_structures",
    "corSymm": "spec.correlation_structures",
    "corExp": "spec.correlation_structures",
    "corGaus": "spec.correlation_structures",
}

__all__ = [
    "ArgumentError",
    "BayesmixWarning",
    "CacheWarning",
    "ComparisonError",
    "ConvergenceWarning",
    "DataError",
    "DataWarning",
    "FitError",
    "FormulaError",
    "LinearMixedModel",
    "PriorError",
    "SamplingWarning",
    "SingularFitWarning",
    "errors",
    "gls",
    "lmm",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bayesmix' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
