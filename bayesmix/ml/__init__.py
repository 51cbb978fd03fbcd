"""The ML/REML engine: lme4's profiled deviance, its optimisation and results.

Owns: the penalised least-squares kernel (:mod:`.deviance`: theta to profiled
deviance or REML criterion, numeric arrays only), the well-scaled working
problem that absorbs offsets, weights and badly scaled columns
(:mod:`.working`), BOBYQA with its convergence check (:mod:`.optimise`),
degenerate-fit and singularity checks (:mod:`.checks`), the fit itself
(:mod:`.fit`), conditional variances (:mod:`.conditional`),
:class:`~.results.MLResult` and its lme4-layout summary (:mod:`.results`,
:mod:`.summary`, :mod:`.rformat`), and ``anova`` (:mod:`.compare`).

May import: :mod:`bayesmix.spec`, :mod:`bayesmix.errors`, numpy, scipy, nlopt;
never :mod:`bayesmix.bayes`, PyMC, PyTensor or ArviZ (an ML fit must not load
them). The one call upward is ``MLResult.save``, which defers to
:mod:`bayesmix.io`.

Notation
--------
theta : covariance parameters; beta : fixed effects; b, u : conditional modes
(b = Lambda u); sigma : residual SD; RX : the fixed-effects Cholesky factor.
"""
