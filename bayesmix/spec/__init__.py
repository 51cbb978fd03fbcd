"""What both engines read: formulas, data cleaning and the numeric design.

Owns: parsing lme4 formulas into bars (:mod:`.formula`), what a formula may
evaluate (:mod:`.formula_eval`), R's contrasts and column names
(:mod:`.contrasts`), the response families of GLMMs (:mod:`.families`), their
log-likelihood with its derivatives in ``eta`` (:mod:`.response_likelihood`), the
zero-inflation design (:mod:`.zero_inflation`), checks of a response against its
model (:mod:`.response_checks`),
finding, checking and cleaning the columns a formula uses (:mod:`.data_prep`),
the :class:`~.design.Design` and its :class:`~.design.RandomBlock` bars
(:mod:`.design`, :mod:`.design_types`, :mod:`.design_columns`), and the covariance parameterisations
shared by both engines (:mod:`.covariance`).

May import: numpy, pandas, scipy, formulae and :mod:`bayesmix.errors`; never an
engine, PyMC, PyTensor or ArviZ.

Notation
--------
n observations, p fixed-effect columns; ``X`` (n, p), ``y`` (n,); each bar is a
block with ``Z`` (n, k), integer ``codes`` (n,) into its levels, and
``theta`` the lower-triangle entries of its relative covariance factor.
"""
