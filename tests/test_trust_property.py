"""Property: any small frame and formula gives a result or a bayesmix exception.

Formulas come from a grammar of lme4 syntax (fixed terms, transforms, bars of
every kind), optionally corrupted by a stray token; frames are small, with
missing values, constant columns and few levels. Whatever happens must be a
fitted result whose ``predict(data) == fitted()``, or an exception from
:mod:`bayesmix.errors`; never a foreign exception.
"""

import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesmix as bmx
from bayesmix import errors

BAYESMIX_ERRORS = (
    errors.FormulaError,
    errors.DataError,
    errors.FitError,
    errors.PriorError,
    errors.ComparisonError,
)

FIXED_TERMS = ["x", "z", "h", "x:h", "I(x^2)", "log(abs(x) + 1)", "C(h)", "poly(x, 2)", "0", "-1"]
BAR_LHS = ["1", "x", "0 + x", "1 + z", "h"]
GROUPINGS = ["g", "h", "g:h", "g/h"]
STRAY = ["", "", "", " x", " )", " (", " |", " }}", " np.pi", " +", " ^2", " `x", " ~ x", " :"]


@st.composite
def formulas(draw):
    response = draw(st.sampled_from(["y", "log(abs(y) + 1)", "I(y * 1000)"]))
    fixed = draw(st.lists(st.sampled_from(FIXED_TERMS), max_size=3, unique=True))
    n_bars = draw(st.integers(0, 2))
    bars = []
    for _ in range(n_bars):
        lhs = draw(st.sampled_from(BAR_LHS))
        bar = draw(st.sampled_from(["|", "||"]))
        grouping = draw(st.sampled_from(GROUPINGS))
        bars.append(f"({lhs} {bar} {grouping})")
    rhs = " + ".join(fixed + bars) or "1"
    stray = draw(st.sampled_from(STRAY))
    position = draw(st.sampled_from(["end", "middle"]))
    if position == "end":
        rhs = rhs + stray
    else:
        rhs = stray + " " + rhs if stray.strip() not in (")", "+") else rhs + stray
    return f"{response} ~ {rhs}"


@st.composite
def frames(draw):
    n = draw(st.integers(6, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_groups = draw(st.integers(1, 6))
    data = pd.DataFrame(
        {
            "y": rng.normal(size=n) * draw(st.sampled_from([1.0, 1e-3, 1e4])),
            "x": rng.normal(size=n) + draw(st.sampled_from([0.0, 1e6])),
            "z": draw(st.sampled_from([rng.normal(size=n), np.ones(n)])),
            "g": rng.integers(0, n_groups, size=n).astype(str),
            "h": pd.Categorical(rng.choice(["a", "b", "c"], size=n)),
        }
    )
    if draw(st.booleans()):
        data.loc[rng.choice(n, size=2, replace=False), draw(st.sampled_from(list(data)))] = np.nan
    return data


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(formula=formulas(), data=frames(), method=st.sampled_from(["ML", "REML"]))
def test_every_outcome_is_a_result_or_a_bayesmix_error(formula, data, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.BayesmixWarning)
        try:
            fit = bmx.lmm(formula, data).fit(method=method)
        except BAYESMIX_ERRORS:
            return
        assert np.all(np.isfinite(fit.fitted())), formula
        assert np.isfinite(fit.loglik), formula
        kept = fit.design.data
        # X beta with |X| ~ 1e6 carries rounding of that size: compare on its scale
        scale = np.abs(fit.design.X).max(initial=1.0) * np.abs(fit.estimates.beta).max(initial=1.0)
        np.testing.assert_allclose(fit.predict(kept), fit.fitted(), rtol=1e-9, atol=1e-12 * scale)
