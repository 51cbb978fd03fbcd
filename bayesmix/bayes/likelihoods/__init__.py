"""Likelihoods for nutpie: fast Gaussian forms (fused, collapsed) and the GLMM families.

Owns: :mod:`.fused` (the full likelihood in one numba pass over the data),
:mod:`.collapsed` with :mod:`.collapsed_kernels`, :mod:`.collapsed_marginal`,
:mod:`.collapsed_model` and :mod:`.collapsed_draws` (fixed effects and small
blocks integrated out exactly, and drawn afterwards from their conditional),
:mod:`.numba_kernels` (registration of the ops' numba code with
source-hash cache keys), and :mod:`.glmm_families` (the binomial, Poisson,
negative binomial, Gamma and zero-inflated log-likelihood graphs of GLMMs).

May import: :mod:`bayesmix.spec`, :mod:`bayesmix.bayes` modules below the model
builder (priors, graph inputs and parts, the compile cache), PyTensor, numba.
"""
