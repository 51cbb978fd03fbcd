# lme4's ML fit of InstEval (73,421 ratings), the reference of
# tests/test_ml_gradient.py::test_insteval_reaches_lme4s_optimum.
# Run from this directory:  Rscript insteval_ml.R   (writes insteval_ml.json)
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
fit <- lmer(y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service), InstEval, REML = FALSE)
out <- list(
  formula = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)",
  method = "ML",
  logLik = as.numeric(logLik(fit)),
  theta = as.list(getME(fit, "theta")),
  fixef = as.list(fixef(fit)),
  sigma = sigma(fit),
  n_evaluations = fit@optinfo$feval,
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "insteval_ml.json")
