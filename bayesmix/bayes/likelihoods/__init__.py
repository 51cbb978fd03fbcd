"""Fast Gaussian likelihoods for nutpie: the fused one-pass kernel and the collapsed form.

Owns: :mod:`.fused` (the full likelihood in one numba pass over the data),
:mod:`.collapsed` with :mod:`.collapsed_kernels`, :mod:`.collapsed_marginal`,
:mod:`.collapsed_model` and :mod:`.collapsed_draws` (fixed effects and small
blocks integrated out exactly, and drawn afterwards from their conditional),
and :mod:`.numba_kernels` (registration of the ops' numba code with
source-hash cache keys).

May import: :mod:`bayesmix.spec`, :mod:`bayesmix.bayes` modules below the model
builder (priors, graph inputs and parts, the compile cache), PyTensor, numba.
"""
