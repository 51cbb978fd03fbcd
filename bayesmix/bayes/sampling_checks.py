"""The warnings a posterior sample gets: divergences, R-hat and bulk ESS.

:func:`check_diagnostics` runs after every fit (``bayesmix.bayes.run.run_sampler``)
and says what to do about each problem it finds.
"""

from __future__ import annotations

from bayesmix.bayes.sampler_defaults import TARGET_ACCEPT_LARGE
from bayesmix.errors import SamplingWarning, warn

RHAT_MAX = 1.01
ESS_MIN = 400


def _target_accept(result) -> float:
    return float(getattr(result, "timing", {}).get("target_accept", TARGET_ACCEPT_LARGE))


def _higher_target_accept(result) -> float:
    return 0.95 if _target_accept(result) < 0.95 else 0.99


def check_diagnostics(result, *, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN) -> None:
    """Warn with :class:`SamplingWarning` when the draws look unreliable."""
    diag = result.diagnostics()
    problems = []
    if diag["divergences"] > 0:
        problems.append(
            f"{diag['divergences']} divergent transitions (raise target_accept above "
            f"{_target_accept(result):g}, e.g. to {_higher_target_accept(result):g}, "
            "or use stronger priors on the group SDs)"
        )
    table = diag["table"]
    bad_rhat = table.index[table["r_hat"] > rhat_max].tolist()
    if bad_rhat:
        problems.append(
            f"R-hat > {rhat_max:g} for {_names(bad_rhat)} (run more tune/draws or chains)"
        )
    bad_ess = table.index[table["ess_bulk"] < ess_min].tolist()
    if bad_ess:
        problems.append(
            f"bulk ESS < {ess_min:g} for {_names(bad_ess)} (increase draws/tune; "
            "for a poorly identified SD, consider a stronger prior or a simpler "
            "random-effects structure)"
        )
    if problems:
        warn("The posterior draws may be unreliable: " + "; ".join(problems) + ".", SamplingWarning)


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
