# glmmTMB fits of zero-inflated Poisson GLMMs with a zero-inflation predictor, on data
# simulated by tests/test_glmm_families.py's generator (numpy default_rng(seed), 300 rows,
# 20 groups: mu = exp(0.5 + 0.3 x + b_g), b_g ~ N(0, 0.5^2), P(zero) = expit(-0.5 + 0.8 z)).
# Seed 4 is the case where a zero-inflation slope started at 1e-16 stayed pinned.
# Run: cd tests/refs/glmm/zi_predictor && Rscript make_zi_predictor_refs.R
suppressPackageStartupMessages({library(glmmTMB); library(jsonlite)})
out <- list()
for (seed in c(0, 4)) {
  d <- read.csv(sprintf("sim_zip_z%d.csv", seed)); d$g <- factor(d$g)
  f <- glmmTMB(y ~ x + (1 | g), ziformula = ~ z, data = d, family = poisson)
  out[[sprintf("seed%d", seed)]] <- list(
    call = "glmmTMB(y ~ x + (1 | g), ziformula = ~ z, data = d, family = poisson)",
    logLik = as.numeric(logLik(f)), df = attr(logLik(f), "df"),
    fixef = as.list(fixef(f)$cond), fixef_se = as.list(sqrt(diag(vcov(f)$cond))),
    zi_fixef = as.list(fixef(f)$zi), zi_fixef_se = as.list(sqrt(diag(vcov(f)$zi))),
    sd_g = attr(VarCorr(f)$cond$g, "stddev")[[1]])
}
out$versions <- list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")))
write_json(out, "zi_predictor.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
