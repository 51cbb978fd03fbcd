"""Satterthwaite's denominator degrees of freedom for t and F tests of fixed effects.

For one contrast ``l`` the variance ``v(phi) = l' V_beta(phi) l`` is matched to a
scaled chi-square: ``nu = 2 v^2 / (g' A g)`` with ``g_i = l' J_i l``. A
``q``-row hypothesis ``L beta = 0`` is split along the eigenvectors of
``L V_beta L'`` into ``q`` independent one-row contrasts, and their ``nu_m``
combined as Fai and Cornelius (1996) do: ``E = sum nu_m / (nu_m - 2)``,
``nu = 2 E / (E - q)``, which is what lmerTest reports (Kuznetsova et al. 2017).

Notation
--------
L : (q, p) hypothesis; v : contrast variance; g : its gradient in phi; A : the
covariance of phi; nu : degrees of freedom; F : the Wald F statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from bayesmix.inference.variance_parameters import VarianceParameters

__all__ = ["FTest", "contrast_df", "f_test", "independent_contrasts", "wald_f"]

# Eigenvalues of L V_beta L' below this fraction of the largest count as zero (a
# hypothesis with redundant rows).
_RANK_TOLERANCE = 1e-8


@dataclass(frozen=True)
class FTest:
    """A Wald F test of ``L beta = 0``: ``F`` on ``num_df`` and ``den_df`` degrees of freedom."""

    sum_sq: float
    mean_sq: float
    num_df: int
    den_df: float
    F: float
    p_value: float

    @classmethod
    def of(cls, F: float, q: int, nu: float, sigma2: float) -> FTest:
        """The test of ``F`` on ``(q, nu)`` df; ``sum_sq`` and ``mean_sq`` are lmerTest's,
        ``F q sigma^2`` and ``F sigma^2``."""
        return cls(F * q * sigma2, F * sigma2, q, nu, F, float(stats.f.sf(F, q, nu)))


def contrast_df(vp: VarianceParameters, c: np.ndarray, V: np.ndarray | None = None) -> float:
    """Satterthwaite's ``nu`` for the single contrast ``c' beta`` (``V``: ``V_beta`` at the
    fit, computed when not given)."""
    V = vp.vcov_beta(vp.phi) if V is None else V
    variance = float(c @ V @ c)
    g = np.einsum("p,kpr,r->k", c, vp.vcov_jacobian, c)
    denominator = float(g @ vp.covariance @ g)
    if denominator <= 0.0:
        return np.inf  # the variance does not depend on phi (no random part)
    return 2.0 * variance**2 / denominator


def independent_contrasts(L: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``P' L`` and variances ``d``: ``L V L' = P diag(d) P'``, zero directions dropped."""
    d, P = np.linalg.eigh(L @ V @ L.T)
    keep = d > _RANK_TOLERANCE * max(d.max(initial=0.0), 0.0)
    return P[:, keep].T @ L, d[keep]


def wald_f(L: np.ndarray, beta: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Independent rows of ``L`` (:func:`independent_contrasts`), their variances and the
    Wald ``F = (L beta)' (L V L')^- (L beta) / q``."""
    rows, d = independent_contrasts(np.atleast_2d(L), V)
    return rows, d, float(np.sum((rows @ beta) ** 2 / d) / rows.shape[0])


def combined_df(nu: np.ndarray) -> float:
    """Fai and Cornelius's combination of one-row ``nu`` into the F test's ``nu``."""
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < 1e-8):
        return float(nu.mean())
    if np.any(nu <= 2.0):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)


def f_test(
    vp: VarianceParameters, L: np.ndarray, beta: np.ndarray, V: np.ndarray | None = None
) -> FTest:
    """Wald F test of ``L beta = 0`` with Satterthwaite's denominator degrees of freedom
    (``V``: ``V_beta`` at the fit, computed when not given)."""
    V = vp.vcov_beta(vp.phi) if V is None else V
    rows, _, F = wald_f(L, beta, V)
    nu = combined_df(np.array([contrast_df(vp, r, V) for r in rows]))
    return FTest.of(F, rows.shape[0], nu, float(vp.phi[-1]) ** 2)
