"""The ML/REML engine: lme4's profiled deviance, its optimisation and results.

Owns: the penalised least-squares kernel (:mod:`.deviance`: theta to profiled
deviance or REML criterion, numeric arrays only; its small-matrix helpers
:mod:`.small_algebra`, its compiled sparse ``A - B B'`` :mod:`.sparse_gram` and its
exact gradient :mod:`.deviance_gradient`), the compiled dense kernel of small
models with its gradient and estimates (:mod:`.dense_kernel`, :mod:`.dense_solution`),
the choice between the kernels (:mod:`.criterion_choice`), single-threaded BLAS
(:mod:`.blas_threads`), the PLS solution both kernels return (:mod:`.pls_solution`),
the well-scaled working problem that absorbs offsets,
weights and badly scaled columns (:mod:`.working`), the gradient search
(:mod:`.gradient_search`) and BOBYQA with their convergence check (:mod:`.optimise`),
degenerate-fit and singularity checks (:mod:`.checks`), the fit itself
(:mod:`.fit`), conditional variances (:mod:`.conditional`),
:class:`~.results.MLResult` and its lme4-layout summary (:mod:`.results`,
:mod:`.summary`, :mod:`.rformat`), and ``anova`` (:mod:`.compare`). GLMMs: the
weighted blocked system (:mod:`.glmm_blocked`), PIRLS's compiled kernels and loop
(:mod:`.pirls_kernel`, :mod:`.pirls_blocks`, :mod:`.pirls_loop`) and its numpy reference
(:mod:`.pirls_system`), the Laplace objective (:mod:`.glmm_laplace`), adaptive
quadrature (:mod:`.glmm_agq`), the two-stage fit (:mod:`.glmm_fit`) and
:class:`~.glmm_results.GLMMResult`; variance-component tables (:mod:`.random_tables`).
Residual variance functions and correlation structures: the joint fit over
``(theta, u)`` with nlme's fitted-value fixed point (:mod:`.residual_fit`), its
curvature-scaled search (:mod:`.scaled_search`) and the compiled one-block
criterion (:mod:`.structured_kernel`, also used by one-block lmm fits).
Data known only by summed cross-products (a Dask DataFrame): the products of any
set of rows and their sum (:mod:`.cross_products`, which the kernel reads for rows in
memory too) and the fit from them (:mod:`.products_fit`).

May import: :mod:`bayesmix.spec`, :mod:`bayesmix.errors`, numpy, scipy, nlopt, numba;
never :mod:`bayesmix.bayes`, PyMC, PyTensor or ArviZ (an ML fit must not load
them). The calls upward are ``MLResult.save``, which defers to
:mod:`bayesmix.io`, and the inference methods of :mod:`.inference_methods`
(``summary(ddf=)``, ``coef_table``, ``anova``, ``confint``, ``ranova``,
``simulate``, ``bootstrap``), which defer to :mod:`bayesmix.inference`.

Notation
--------
theta : covariance parameters; beta : fixed effects; b, u : conditional modes
(b = Lambda u); sigma : residual SD; RX : the fixed-effects Cholesky factor;
eta : linear predictor; W : PIRLS weights; nagq : quadrature points;
u : unconstrained parameters of a residual structure, Lambda its covariance / sigma^2.
"""
