"""Self-starting nonlinear models, matching R's ``SSfol``, ``SSlogis`` & co.

Each :class:`SelfStartModel` couples a mean function, written once against an
array namespace ``xp`` so that the same code runs on ``numpy`` (ML engine) and
on ``pytensor.tensor`` (PyMC engine), with a data-driven routine for starting
values. As with R's ``getInitial`` followed by ``nls``, the starting values are
the pooled nonlinear least-squares estimates: a closed-form guess from
:mod:`bayesmix.nonlinear.selfstart_init` refined with :func:`scipy.optimize.least_squares`.

>>> from bayesmix.nonlinear.selfstart import SELF_START
>>> import numpy as np
>>> SELF_START["SSmicmen"].mean(np, np.array([0.5]), 200.0, 0.5)
array([100.])

The parametrisations are R's, so estimates compare one to one with ``nls``
and ``nlme`` output. This module never imports pytensor; callers pass it in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from bayesmix.errors import DataError, FitError, FormulaError
from bayesmix.nonlinear import selfstart_init as init
from bayesmix.nonlinear import selfstart_means as means
from bayesmix.nonlinear.expression import (
    CONSTANTS,
    ExpressionEvaluator,
    expression_names,
    parse_expression,
)

__all__ = ["SELF_START", "SelfStartCall", "SelfStartModel", "get_initial", "parse_selfstart_call"]


@dataclass(frozen=True)
class SelfStartModel:
    """A nonlinear mean function with its own starting-value routine.

    Attributes
    ----------
    name : str
        R's name, e.g. ``"SSlogis"``.
    covariates : tuple of str
        Names of the data arguments, in call order (R's argument names).
    params : tuple of str
        Names of the parameters, in call order (R's argument names).
    formula_text : str
        The mean function in mathematical notation.
    mean : callable
        ``mean(xp, *covariates, *params)``; ``xp`` is ``numpy`` or
        ``pytensor.tensor`` and arguments broadcast against each other.
    initial : callable
        ``initial(*covariates, response)`` on 1-D numpy arrays, returning the
        pooled least-squares estimates as ``{param: float}``. Raises
        :class:`~bayesmix.errors.FitError` when no values can be found.
    """

    name: str
    covariates: tuple[str, ...]
    params: tuple[str, ...]
    formula_text: str
    mean: Callable[..., Any]
    initial: Callable[..., dict[str, float]]

    def __repr__(self) -> str:
        args = ", ".join(self.covariates + self.params)
        return f"<SelfStartModel {self.name}({args}): {self.formula_text}>"


# --- starting values: closed-form guess, then pooled nonlinear least squares --


def _as_vector(values: Any, label: str, n: int) -> np.ndarray:
    """A float vector of length ``n``; scalars (one dose for all rows) are repeated."""
    array = np.asarray(values, dtype=float)
    if array.size == 1:
        return np.full(n, array.item())
    if array.size != n or array.squeeze().ndim != 1:
        raise DataError(f"{label} must be a 1-D array of length {n}, got shape {array.shape}")
    return array.ravel()


def _pooled_start(
    mean: Callable[..., Any],
    name: str,
    covariates: tuple[str, ...],
    params: tuple[str, ...],
    guess: Callable[..., dict[str, float]],
    *arrays: Any,
) -> dict[str, float]:
    """Closed-form guess refined by least squares on all observations."""
    if len(arrays) != len(covariates) + 1:
        raise TypeError(f"{name} initial() takes {', '.join(covariates)} and the response")
    n = np.size(arrays[-1])
    labels = (*covariates, "response")
    data = [_as_vector(a, label, n) for a, label in zip(arrays, labels, strict=True)]
    advice = f"; pass start= with values for {', '.join(params)}"
    if not all(np.all(np.isfinite(a)) for a in data):
        raise FitError(f"{name}: cannot compute starting values: the data hold NaN or inf{advice}")
    if n < len(params):
        raise FitError(
            f"{name}: cannot compute starting values from {n} observations "
            f"({len(params)} parameters){advice}"
        )
    try:
        with np.errstate(all="ignore"):
            start = guess(*data)
    except (init.StartError, np.linalg.LinAlgError) as err:
        raise FitError(f"{name}: cannot compute starting values: {err}{advice}") from err
    x0 = np.array([start[p] for p in params])
    if not np.all(np.isfinite(x0)):
        raise FitError(f"{name}: the closed-form starting values are not finite{advice}")
    *covs, y = data

    def residuals(theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = np.asarray(mean(np, *covs, *theta), dtype=float) - y
        # a huge finite residual makes the optimiser reject steps into NaN land
        return np.where(np.isfinite(r), r, 1e150)

    fit = least_squares(
        residuals,
        x0,
        method="lm",
        x_scale="jac",
        xtol=1e-12,
        ftol=1e-12,
        gtol=1e-12,
        max_nfev=2000 * (len(params) + 1),
    )
    rss0 = float(np.sum(residuals(x0) ** 2))
    if not (fit.status > 0 and np.all(np.isfinite(fit.x)) and 2 * fit.cost <= rss0 * (1 + 1e-9)):
        raise FitError(
            f"{name}: the pooled least-squares fit for starting values failed "
            f"({fit.message}){advice}"
        )
    return {p: float(v) for p, v in zip(params, fit.x, strict=True)}


def _model(
    name: str, covariates: str, params: str, mean: Callable[..., Any], guess: Callable[..., Any]
) -> SelfStartModel:
    covs, pars = tuple(covariates.split()), tuple(params.split())
    formula_text = (mean.__doc__ or "").partition("\n")[0]  # empty under python -OO
    initial = partial(_pooled_start, mean, name, covs, pars, guess)
    return SelfStartModel(name, covs, pars, formula_text, mean, initial)


_MODELS = (
    _model("SSfol", "Dose input", "lKe lKa lCl", means.fol, init.start_fol),
    _model("SSlogis", "input", "Asym xmid scal", means.logis, init.start_logis),
    _model("SSasymp", "input", "Asym R0 lrc", means.asymp, init.start_asymp),
    _model("SSasympOff", "input", "Asym lrc c0", means.asymp_off, init.start_asymp_off),
    _model("SSasympOrig", "input", "Asym lrc", means.asymp_orig, init.start_asymp_orig),
    _model("SSmicmen", "input", "Vm K", means.micmen, init.start_micmen),
    _model("SSgompertz", "x", "Asym b2 b3", means.gompertz, init.start_gompertz),
    _model("SSfpl", "input", "A B xmid scal", means.fpl, init.start_fpl),
    _model("SSbiexp", "input", "A1 lrc1 A2 lrc2", means.biexp, init.start_biexp),
    _model("SSweibull", "x", "Asym Drop lrc pwr", means.weibull, init.start_weibull),
)

#: The self-starting models by R name; ``help(SELF_START[name].mean)`` explains one.
SELF_START: dict[str, SelfStartModel] = {m.name: m for m in _MODELS}


# --- formula and data front ends ----------------------------------------------


class SelfStartCall(NamedTuple):
    """A parsed ``SSxxx(...)`` call.

    Attributes
    ----------
    model : SelfStartModel
    covariates : tuple of str
        The data arguments as written (``"Time"``, ``"log(conc)"``).
    params : tuple of str
        The user's names for the model's parameters.
    inputs : tuple of ExpressionEvaluator
        The data arguments, checked and compiled; ``inputs[i].names`` are the
        columns argument i reads.
    """

    model: SelfStartModel
    covariates: tuple[str, ...]
    params: tuple[str, ...]
    inputs: tuple[Any, ...] = ()

    def input_arrays(self, columns: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The data arguments' values (numpy), from the columns they read."""
        with np.errstate(all="ignore"):
            return [np.asarray(e(np, columns), dtype=float) for e in self.inputs]


_CALL = re.compile(r"^\s*(?P<name>[A-Za-z_.][\w.]*)\s*\((?P<args>.*)\)\s*$", re.DOTALL)
_IDENT = re.compile(r"^[A-Za-z_.][\w.]*$")


def _split_arguments(text: str) -> list[str] | None:
    """The comma-separated arguments of a call, or None when brackets do not balance."""
    arguments, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return None
        if char == "," and depth == 0:
            arguments.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    arguments.append("".join(current).strip())
    return arguments if depth == 0 else None


def parse_selfstart_call(text: str) -> SelfStartCall | None:
    """Recognise a self-starting model call such as ``SSfol(Dose, Time, lKe, lKa, lCl)``.

    Parameters
    ----------
    text : str
        A formula (``"conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"``) or its
        right-hand side. Arguments are positional, as in R: first the data
        arguments (columns, or expressions of columns such as ``log(conc)``,
        with the functions of :data:`bayesmix.nonlinear.expression.FUNCTIONS`),
        then the user's names for the model's parameters.

    Returns
    -------
    SelfStartCall or None
        The parsed call, or ``None`` when the right-hand side is not a single
        function call (an explicit formula).

    Raises
    ------
    FormulaError
        If the call names an unknown ``SS`` model, has the wrong number of
        arguments, a data argument that is not an allowed expression, or
        parameter names that are not plain, distinct names.
    """
    rhs = text.split("~", 1)[1] if "~" in text else text
    match = _CALL.match(rhs)
    args = _split_arguments(match["args"]) if match else None
    if match is None or args is None:
        return None
    name = match["name"]
    model = SELF_START.get(name)
    if model is None:
        if name.startswith("SS"):
            known = ", ".join(SELF_START)
            raise FormulaError(f"unknown self-starting model {name!r}; known models: {known}")
        return None
    wanted = model.covariates + model.params
    if len(args) != len(wanted):
        raise FormulaError(
            f"{name} takes {len(wanted)} arguments ({', '.join(wanted)}), "
            f"got {len(args)}: {rhs.strip()}"
        )
    covariates, params = tuple(args[: len(model.covariates)]), tuple(args[len(model.covariates) :])
    bad = [a for a in params if not _IDENT.match(a)]
    if bad:
        raise FormulaError(f"{name}'s parameters must be plain names, got {bad}")
    inputs = []
    for argument in covariates:
        tree = parse_expression(argument, f"the {name} argument")
        names = tuple(n for n in expression_names(tree) if n not in CONSTANTS)
        inputs.append(ExpressionEvaluator(argument, names))
    columns = {c for e in inputs for c in e.names}
    if len(set(params)) != len(params) or set(params) & columns:
        raise FormulaError(
            f"{name}: parameter names must be distinct from each other and from columns"
        )
    return SelfStartCall(model, covariates, params, tuple(inputs))


def get_initial(
    model: str | SelfStartModel,
    data: pd.DataFrame,
    response: str,
    covariates: Mapping[str, str] | Sequence[str],
    *,
    params: Sequence[str] | None = None,
) -> dict[str, float]:
    """Starting values for a self-starting model from a data frame (R's ``getInitial``).

    Parameters
    ----------
    model : str or SelfStartModel
        Model name (``"SSlogis"``) or the model itself.
    data : pandas.DataFrame
        The data; rows with missing values in the used columns are dropped.
    response : str
        Column holding the response.
    covariates : mapping or sequence of str
        Columns for the model's covariates: a mapping from the model's
        argument names (``{"Dose": "Dose", "input": "Time"}``) or column names
        in the model's order (``["Dose", "Time"]``).
    params : sequence of str, optional
        The user's names for the parameters, in the model's order; keys of
        the result. Defaults to the model's own names.

    Returns
    -------
    dict
        ``{parameter name: pooled least-squares estimate}``.

    Raises
    ------
    DataError
        If a column is missing or the arguments do not match the model.
    FitError
        If starting values cannot be computed.
    """
    spec = SELF_START.get(model) if isinstance(model, str) else model
    if spec is None:
        raise DataError(f"unknown self-starting model {model!r}; known: {', '.join(SELF_START)}")
    if isinstance(covariates, Mapping):
        unknown = set(covariates) - set(spec.covariates)
        missing = [c for c in spec.covariates if c not in covariates]
        if unknown or missing:
            raise DataError(
                f"{spec.name} covariates are {spec.covariates}; "
                f"got mapping keys {tuple(covariates)}"
            )
        columns = [covariates[c] for c in spec.covariates]
    else:
        columns = [covariates] if isinstance(covariates, str) else list(covariates)
        if len(columns) != len(spec.covariates):
            raise DataError(f"{spec.name} needs columns for {spec.covariates}; got {columns}")
    names = tuple(params) if params is not None else spec.params
    if len(names) != len(spec.params):
        raise DataError(f"{spec.name} has {len(spec.params)} parameters {spec.params}; got {names}")
    absent = [c for c in (*columns, response) if c not in data.columns]
    if absent:
        raise DataError(f"columns {absent} are not in the data")
    frame = data[list(dict.fromkeys([*columns, response]))].dropna()
    arrays = [frame[c].to_numpy(dtype=float) for c in (*columns, response)]
    values = spec.initial(*arrays)
    return {user: values[own] for user, own in zip(names, spec.params, strict=True)}
