"""Predictive checks: replicated data against the observed (brms's ``pp_check``).

:func:`plot_ppc` draws ArviZ's predictive-check plots (``arviz_plots``'
``plot_ppc_dist``, ``plot_ppc_tstat`` and ``plot_ppc_interval``) from

* a Bayesian result: replicates from the posterior
  (``result.sample_posterior_predictive()``);
* the tree of ``model.sample_prior_predictive()``: replicates from the prior;
* an ML/REML fit: responses simulated from the fitted model conditional on the
  fitted groups' modes (lme4's ``simulate(use.u = TRUE)``; for a GLMM, from the
  family at the fitted means), the frequentist counterpart of the check.

With ``group=`` each level of a grouping factor gets its own panel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.errors import ArgumentError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["chosen_levels", "plot_ppc", "predictive_tree"]

_KINDS = ("density", "stat", "intervals")
#: beyond this many levels, group panels become unreadable: pick some with levels=
_MAX_GROUP_PANELS = 16


def plot_ppc(
    source: Any,
    kind: str = "density",
    *,
    group: str | None = None,
    levels: list | None = None,
    stat: str = "mean",
    num_samples: int = 50,
    random_seed: int | None = None,
) -> Figure:
    """Replicated data against the observed: the predictive check of a fit or a prior.

    Parameters
    ----------
    source
        A Bayesian result (posterior predictive), the ``DataTree`` of
        ``model.sample_prior_predictive()`` (prior predictive) or of
        ``result.sample_posterior_predictive()``, or an ML/REML fit of
        ``bmx.lmm``/``bmx.glmm`` (responses simulated from the fit).
    kind : {"density", "stat", "intervals"}
        ``"density"``: the observed distribution over ``num_samples``
        replicated ones (brms's ``dens_overlay``); ``"stat"``: the distribution
        of a statistic of the replicates with the observed value
        (``stat_grouped``/``ppc_stat``); ``"intervals"``: each observation with
        its predictive interval (``intervals``).
    group : str, optional
        A grouping factor (given a fitted result, also any column of its data):
        one panel per level.
    levels : list, optional
        The levels of ``group`` to show (default: all, at most 16).
    stat : str
        The statistic for ``kind="stat"``: ``"mean"``, ``"median"``, ``"std"``,
        ``"var"``, ``"min"``, ``"max"``, ``"iqr"``, ``"mad"`` or a quantile as a float.
    num_samples : int
        Replicates drawn for ``kind="density"`` (and simulated for an ML fit); the
        statistic and the intervals use at least 500 (as many as the posterior has).
    random_seed : int, optional
        Seed of the replicates.

    Returns
    -------
    matplotlib.figure.Figure
        One panel (or one per level), titled, with the model's formula above.
    """
    import arviz_plots as azp

    if kind not in _KINDS:
        raise ArgumentError(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}.")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ArgumentError(f"num_samples must be a positive integer, not {num_samples!r}.")
    # replicates: as many curves as shown; a statistic and intervals need a few hundred
    simulations = num_samples if kind == "density" else max(num_samples, 500)
    tree, which, formula, data = predictive_tree(source, simulations, random_seed)
    if group is not None:
        tree = _split_by_group(tree, which, data, group, levels)
    else:  # the panel is titled by the variable: the response's name, not "y"
        response = tree.attrs.get("response") or getattr(
            getattr(source, "design", None), "response", None
        )
        if response and response != "y":
            tree = xr.DataTree.from_dict(
                {
                    which: tree[which].to_dataset()[["y"]].rename({"y": response}),
                    "observed_data": tree["observed_data"]
                    .to_dataset()[["y"]]
                    .rename({"y": response}),
                }
            )
    common = {"group": which, "backend": "matplotlib"}
    if kind == "density":
        n_draws = tree[which].sizes["chain"] * tree[which].sizes["draw"]
        # ArviZ leaves the data out of a prior check; shown, it says what the prior allows
        pc = azp.plot_ppc_dist(
            tree,
            num_samples=min(num_samples, n_draws),
            visuals={"observed_dist": {}},
            **common,
        )
    elif kind == "stat":
        pc = azp.plot_ppc_tstat(tree, t_stat=stat, **common)
    else:
        pc = azp.plot_ppc_interval(tree, **common)
    figure = pc.viz["figure"].item() if hasattr(pc.viz["figure"], "item") else pc.viz["figure"]
    label = {"prior_predictive": "Prior", "posterior_predictive": "Posterior"}[which]
    if getattr(source, "estimates", None) is not None:
        label = "Simulated from the fit:"
    else:
        label = f"{label} predictive check:"
    figure.suptitle(f"{label} {formula}" if formula else label, fontsize="medium")
    figure.set_layout_engine("constrained")  # room for the title above the panels' own
    return figure


def predictive_tree(
    source: Any, num_samples: int = 50, random_seed: int | None = None
) -> tuple[xr.DataTree, str, str | None, pd.DataFrame | None]:
    """``(tree, group, formula, data)`` holding the replicates of ``source``."""
    if isinstance(source, xr.DataTree):
        which = next(
            (g for g in ("prior_predictive", "posterior_predictive") if g in source.children),
            None,
        )
        if which is None or "observed_data" not in source.children:
            raise ArgumentError(
                "a DataTree for plot_ppc needs a prior_predictive or posterior_predictive group "
                "and observed_data: use model.sample_prior_predictive() or "
                "result.sample_posterior_predictive()."
            )
        return source, which, source.attrs.get("formula"), None
    design = getattr(source, "design", None)
    if design is None:
        raise ArgumentError(
            f"plot_ppc takes a fitted result or a predictive DataTree, not {type(source).__name__}."
        )
    if hasattr(source, "sample_posterior_predictive"):
        thinned = _thinned(source, num_samples)
        tree = thinned.sample_posterior_predictive(random_seed=random_seed)
        return tree, "posterior_predictive", design.formula, design.data
    from bayesmix.bayes.predictive import grouping_levels

    y_rep = _simulated(source, num_samples, random_seed)
    observed = np.asarray(design.y, dtype=float)
    tree = xr.DataTree.from_dict(
        {
            "posterior_predictive": xr.Dataset({"y": (("chain", "draw", "obs"), y_rep[None])}),
            "observed_data": xr.Dataset({"y": ("obs", observed)}),
            "constant_data": grouping_levels(design),
        }
    )
    return tree, "posterior_predictive", design.formula, design.data


def _thinned(result: Any, n_draws: int) -> Any:
    """``result`` with about ``n_draws`` of its posterior draws, evenly spaced in each chain.

    A plot shows a few dozen replicates (or summarises a few hundred); replicating
    every draw would hold draws x rows values (InstEval: 4,000 x 73,421, 2.3 GB).
    """
    import dataclasses

    posterior = result.idata["posterior"]
    per_chain = -(-n_draws // posterior.sizes["chain"])
    if per_chain >= posterior.sizes["draw"]:
        return result
    keep = np.unique(np.linspace(0, posterior.sizes["draw"] - 1, per_chain).round().astype(int))
    idata = result.idata.copy()
    idata["posterior"] = posterior.to_dataset().isel(draw=keep)
    return dataclasses.replace(result, idata=idata)


def _simulated(fit: Any, nsim: int, seed: int | None) -> np.ndarray:
    """``(nsim, n)`` responses simulated from an ML fit, conditional on its modes."""
    family = getattr(fit, "family", None)
    if family is None:
        from bayesmix.inference.simulate import check_simulable

        check_simulable(fit)
        return np.asarray(fit.simulate(nsim, seed=seed, use_u=True), dtype=float).T
    rng = np.random.default_rng(seed)
    mu = np.asarray(fit.predict(type="conditional"), dtype=float)
    zero = np.asarray(fit.predict(type="zprob"), dtype=float)
    trials = fit.design.weights if family.name == "binomial" else None
    y = family.draw(
        np.broadcast_to(mu, (nsim, mu.size)),
        rng,
        trials=trials,
        dispersion=fit.dispersion,
        zero_prob=np.broadcast_to(zero, (nsim, mu.size)) if np.any(zero) else None,
    )
    return y / trials if trials is not None else np.asarray(y, dtype=float)


def chosen_levels(labels: Any, levels: list | None, group: str) -> tuple[list, list]:
    """``(known, chosen)``: the levels of ``labels`` in order of appearance, and ``levels``
    as strings (all of them when ``None``), refused where not among them."""
    known = list(dict.fromkeys(np.asarray(labels).astype(str)))
    chosen = known if levels is None else [str(level) for level in levels]
    unknown = [level for level in chosen if level not in known]
    if unknown:
        raise ArgumentError(f"levels {unknown} are not levels of {group!r}.")
    return known, chosen


def _split_by_group(
    tree: xr.DataTree, which: str, data: pd.DataFrame | None, group: str, levels: list | None
) -> xr.DataTree:
    """One variable per level of ``group`` (ArviZ draws one panel per variable)."""
    constant = tree["constant_data"] if "constant_data" in tree.children else None
    if constant is not None and group in constant.data_vars:
        values = np.asarray(constant[group].values).astype(str)
    elif data is not None and group in data.columns:
        values = data[group].astype(str).to_numpy()
    else:
        raise ArgumentError(
            f"group={group!r} is neither a grouping factor nor a column of the model's data."
        )
    known, chosen = chosen_levels(values, levels, group)
    if len(chosen) > _MAX_GROUP_PANELS:
        raise ArgumentError(
            f"{group!r} has {len(chosen)} levels; choose at most {_MAX_GROUP_PANELS} with "
            f"levels=[...] (e.g. levels={known[:4]})."
        )
    y_rep = tree[which]["y"].transpose("chain", "draw", "obs").values
    y_obs = tree["observed_data"]["y"].values
    rep, obs = {}, {}
    for level in chosen:
        rows = np.flatnonzero(values == level)
        name = f"{group} {level}"
        rep[name] = (("chain", "draw", f"obs_{level}"), y_rep[:, :, rows])
        obs[name] = ((f"obs_{level}",), y_obs[rows])
    return xr.DataTree.from_dict({which: xr.Dataset(rep), "observed_data": xr.Dataset(obs)})
