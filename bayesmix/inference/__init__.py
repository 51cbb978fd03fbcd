"""Inference on fitted ML/REML models: tests, intervals, simulation, bootstrap, selection.

Owns: numeric derivatives of the criterion in the variance parameters
(:mod:`.derivatives`, :mod:`.variance_parameters`), denominator degrees of
freedom by Satterthwaite (:mod:`.satterthwaite`), Kenward–Roger
(:mod:`.kenward_roger`, its matrices by ``q x q`` algebra in :mod:`.kr_matrices`)
and nlme's containment rule (:mod:`.containment`), the hypotheses of type I and
III tests (:mod:`.hypotheses`), coefficient and F tables (:mod:`.tables`), lme4's
confidence intervals (:mod:`.confint`, likelihood profiles in :mod:`.profile`)
and nlme's (:mod:`.nlme_intervals`), lmerTest's ``ranova`` (:mod:`.ranova`),
simulation and the parametric bootstrap (:mod:`.simulate`, :mod:`.bootstrap`),
pbkrtest's bootstrap LRT (:mod:`.pbtest`), their batched Dask runner
(:mod:`.distributed`), stepwise selection of random effects (:mod:`.selection`
for ``lmm``, :mod:`.selection_nonlinear` for ``nlmm``, the shared walk in
:mod:`.selection_steps`), and which fits each tool takes (:mod:`.applicability`).

May import: :mod:`bayesmix.spec`, :mod:`bayesmix.ml`, :mod:`bayesmix.nonlinear`,
numpy, scipy, pandas, nlopt, dask (lazily); never :mod:`bayesmix.bayes`. Results
reach this package through deferred imports in their methods (``summary(ddf=)``,
``coef_table``, ``anova``, ``confint``, ``simulate``, ``bootstrap``; see
:mod:`bayesmix.ml.inference_methods`); nothing here imports a module that
imports it back at load time, so no cycle forms.

Notation
--------
beta : fixed effects; V_beta : their covariance ``sigma^2 (RX'RX)^-1``;
phi = (theta, sigma) : variance parameters; A : asymptotic covariance of phi,
``2 H^-1`` with H the Hessian of the deviance (or REML criterion) in phi;
L : hypothesis matrix (q rows); nu : denominator degrees of freedom;
zeta : signed root of a profile's deviance difference.
"""
