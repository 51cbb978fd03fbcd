"""What both engines read: formulas, data cleaning and the numeric design.

Owns: parsing lme4 formulas into bars (:mod:`.formula`), what a formula may
evaluate (:mod:`.formula_eval`), R's contrasts and column names
(:mod:`.contrasts`), the response families of GLMMs (:mod:`.families`), their
log-likelihood with its derivatives in ``eta`` (:mod:`.response_likelihood`), the
zero-inflation design (:mod:`.zero_inflation`), checks of a response against its
model (:mod:`.response_checks`), finding, checking and cleaning the columns a
formula uses (:mod:`.data_prep`), the :class:`~.design.Design` and its
:class:`~.design.RandomBlock` bars (:mod:`.design`, :mod:`.design_types`,
:mod:`.design_columns`, whose grouping levels are looked up by :mod:`.level_codes`;
parts made of plain numeric columns without formulae, :mod:`.plain_terms`), the
covariance parameterisations shared by both engines (:mod:`.covariance`), and nlme's
residual variance functions (:mod:`.variance_functions`, bound to rows in
:mod:`.variance_bound`) and within-group correlation structures
(:mod:`.correlation_structures`, their
binding to the data :mod:`.correlation_binding` and arithmetic
:mod:`.correlation_math`), read from nlme's syntax as data (:mod:`.nlme_syntax`)
and combined into the residual covariance that both engines whiten by
(:mod:`.residual_structure`).

May import: numpy, pandas, scipy, formulae and :mod:`bayesmix.errors`; never an
engine, PyMC, PyTensor or ArviZ.

Notation
--------
n observations, p fixed-effect columns; ``X`` (n, p), ``y`` (n,); each bar is a
block with ``Z`` (n, k), integer ``codes`` (n,) into its levels, and
``theta`` the lower-triangle entries of its relative covariance factor.
Residual covariance ``sigma^2 Lambda``, ``Lambda = G C G``: ``g`` (diagonal of
``G``) the variance function's SD multipliers, ``C`` block diagonal by correlation
group; ``u`` the structures' unconstrained parameters.
"""
