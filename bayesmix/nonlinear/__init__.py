"""Nonlinear mixed models: mean functions, their designs and both engines' fits.

Owns: checked expressions of columns and parameters (:mod:`.expression`),
mean functions and R's self-starting models (:mod:`.mean`,
:mod:`.selfstart`, :mod:`.selfstart_means`, :mod:`.selfstart_init`), the
per-parameter designs (:mod:`.build`, :mod:`.design`), nlme's Lindstrom-Bates
fit (least squares, R's ``nls``, when there are no random effects) and its result
(:mod:`.ml_fit`, :mod:`.ml_results`), its steps with a residual variance function or
correlation structure (:mod:`.residual_steps`), and the PyMC model and its result
(:mod:`.bayes_model`, :mod:`.bayes_results`). The random-effects algebra is
the linear engines'; only the map from linear predictors to the mean differs.

May import: :mod:`bayesmix.spec`, :mod:`bayesmix.ml` and :mod:`bayesmix.bayes`
(each engine's part from its own module), :mod:`bayesmix.errors`.

Notation
--------
phi : the mean function's parameters per observation (one linear predictor
each); beta, b : their fixed and random effects; f(phi, x) : the mean function.
"""
