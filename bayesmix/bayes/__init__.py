"""The Bayesian engine: priors, the PyMC model, NUTS sampling and its results.

Owns: priors as plain data with defaults scaled to the data (:mod:`.priors`),
the graph pieces and their assembly into a PyMC model (:mod:`.graph_inputs`,
:mod:`.graph_parts`, :mod:`.lkj`, :mod:`.model`), the one-pass and collapsed
likelihood kernels (:mod:`.likelihoods`), nutpie compilation and the compile
caches (:mod:`.compile`), sampling with argument checks and diagnostics
(:mod:`.fit`, :mod:`.validate`, :mod:`.diagnostics`), and
:class:`~.results.BayesResult` with its tables (:mod:`.results`, :mod:`.tables`).

May import: :mod:`bayesmix.spec`, :mod:`bayesmix.errors`, PyMC, PyTensor,
nutpie, ArviZ, xarray; never :mod:`bayesmix.ml`. The one call upward is
``BayesResult.save``, which defers to :mod:`bayesmix.io`.

Notation
--------
beta, beta_c : fixed effects (of the original and of the centred columns);
r_<tag>, sd_<tag>, cor_<tag> : group effects, their SDs and correlations per
block; z : standard-normal effects; sigma : residual SD.
"""
