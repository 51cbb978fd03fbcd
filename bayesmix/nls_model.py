"""Nonlinear models without random effects: :func:`nls`, R's ``nls``.

A thin constructor over :class:`~bayesmix.nonlinear_model.NonlinearMixedModel`:
one constant fixed effect per parameter and no bars, which its fit solves by
least squares (the Lindstrom-Bates iteration reduces to it without random
effects).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayesmix.errors import FormulaError
from bayesmix.nonlinear.expression import CONSTANTS, expression_names, parse_expression
from bayesmix.nonlinear.selfstart import parse_selfstart_call
from bayesmix.nonlinear_model import NonlinearMixedModel

__all__ = ["nls"]


def nls(
    formula: str,
    data: pd.DataFrame,
    *,
    start: Mapping[str, float] | None = None,
    offset: str | np.ndarray | None = None,
    weights: str | np.ndarray | None = None,
) -> NonlinearMixedModel:
    """A nonlinear model without random effects, fitted by least squares (R's ``nls``).

    The parameters are those of the self-starting model (``SSlogis(age, Asym,
    xmid, scal)``) or, as in R, the names given in ``start``. ``.fit()`` gives
    R's ``nls`` estimates, standard errors (``sqrt(RSS / (n - p))`` scale, as
    nlme's conventions scale ML SEs) and ``logLik``/``AIC``/``BIC`` (``df`` =
    parameters + 1); its ``sigma`` is the ML estimate ``sqrt(RSS / n)`` that the
    logLik uses, where R's ``sigma()`` of an nls fit is ``sqrt(RSS / (n - p))``.
    :func:`~bayesmix.anova` compares it with an ML fit of the mixed model (nlme's
    ``anova(nlme_fit, nls_fit)``).

    Parameters
    ----------
    formula : str
        ``"response ~ mean function"``, as for :func:`nlmm`.
    data : DataFrame
    start : dict, optional
        Starting values ``{parameter: value}``; needed unless the mean is a
        self-starting model. Its keys name the parameters of an explicit mean.
    offset, weights : str or array, optional
        As for :func:`nlmm`.

    Returns
    -------
    NonlinearMixedModel
        With one constant fixed effect per parameter and no random effects;
        ``nlmm(formula, data, params={...})`` with formulas such as
        ``"1 + Sex"`` (and no bars) fits covariate effects the same way
        (nlme's ``gnls``).

    Examples
    --------
    >>> import bayesmix as bmx
    >>> lob = bmx.load_dataset("Loblolly")
    >>> fit = bmx.nls("height ~ SSasymp(age, Asym, R0, lrc)", lob).fit()
    >>> round(fit.loglik, 3)
    -162.817
    """
    if not isinstance(formula, str):
        raise FormulaError(
            f"formula must be a string such as 'y ~ SSlogis(x, A, m, s)', got {formula!r}."
        )
    if "|" in formula:
        raise FormulaError(
            f"nls fits a model without random effects, but {formula!r} has a '|' term; use "
            "bmx.nlmm(formula, data, params={...}) with the random effects in params."
        )
    call = parse_selfstart_call(formula)
    if call is not None:
        names = list(call.params)
    else:
        names = _expression_parameters(formula, data)
        given = list(start) if isinstance(start, Mapping) else []
        missing = [name for name in names if name not in given]
        unused = [name for name in given if name not in names]
        if missing or unused:
            problem = (
                f"needs start= values for {', '.join(map(repr, missing))}"
                if missing
                else f"was given start= values for {', '.join(map(repr, unused))}, which it "
                "does not use"
            )
            raise FormulaError(
                f"{formula!r} is not a self-starting model, so nls {problem}; its parameters "
                f"(the names that are not columns of the data) are {', '.join(names)}."
            )
    return NonlinearMixedModel(
        formula, data, {name: "1" for name in names}, start=start, offset=offset, weights=weights
    )


def _expression_parameters(formula: str, data: pd.DataFrame) -> list[str]:
    """The names of an explicit mean expression that are not columns: its parameters."""
    if "~" not in formula:
        raise FormulaError(f"{formula!r} needs a response: 'y ~ mean function'.")
    tree = parse_expression(formula.split("~", 1)[1].strip(), "the mean function")
    columns = {str(c) for c in getattr(data, "columns", [])}
    return [n for n in expression_names(tree) if n not in columns and n not in CONSTANTS]
