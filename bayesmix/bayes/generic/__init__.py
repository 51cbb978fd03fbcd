"""One compiled log density for every model of a kind: nothing compiled per model.

``program`` (with ``prior_rows``, ``glmm_program`` and ``residual_program``) turns
a built PyMC model (a Gaussian LMM with the graph likelihood, a GLMM, or a model
with a residual structure) into arrays; ``kernel`` (with
``families``, ``residual``, ``dense_correlation``, ``arma``, ``lkj_kernel`` and
``special``) computes its log density and gradient from those arrays;
``nutpie_model`` wraps that kernel in nutpie's C callbacks, compiled once per
machine and kept in bayesmix's compile cache. May import ``spec``, the ``bayes``
modules below the model builders, numba and nutpie.

Notation
--------
x : unconstrained parameter vector (PyMC's order); Xc, Zc : centred fixed and
random columns; R : group effects; L : an LKJ block's Cholesky factor; eta :
linear predictor.
"""
