"""Compiling PyMC models for nutpie, and the caches that make later fits start fast.

Owns: :mod:`.nutpie` (compile or reuse a model in this process),
:mod:`.cfunc` (nutpie's C log density generated so numba can cache it on disk)
and :mod:`.cache` (where the on-disk cache lives, its bound and
``bayesmix.clear_cache``).

May import: :mod:`bayesmix.spec`, :mod:`bayesmix.errors`, PyTensor, numba,
nutpie, platformdirs; :mod:`.cache` imports none of PyTensor or PyMC.
"""
