# Which Laplace approximation does each engine use? At the same parameter
# values, recompute the marginal log-likelihood of a one-grouping-factor
# random-intercept model group by group (1-d integrals) with
#   (a) the observed curvature  H = -d^2/db^2 [log p(y|b) + log N(b; 0, sd^2)]
#   (b) the expected (Fisher) curvature  H = sum_i w_i + 1/sd^2,
#       w_i = (dmu/deta)^2 / Var(y_i)  (lme4's PIRLS weights)
# and compare with glmmTMB's logLik and with lme4's deviance function.
# For canonical links (Poisson-log, binomial-logit) (a) = (b); for NB2-log and
# Gamma-log they differ. Writes laplace_conventions.json.
#
# Run from this folder:  Rscript check_laplace_conventions.R

source("glmm_ref_utils.R")

laplace_1d <- function(d, beta, sdg, logdens, fisher_w, type) {
  tot <- 0
  for (lev in levels(d$g)) {
    s <- d[d$g == lev, ]
    eta0 <- beta[1] + beta[2] * s$x
    h <- function(b) sum(logdens(s$y, exp(eta0 + b))) + dnorm(b, 0, sdg, log = TRUE)
    bh <- optimize(h, c(-5, 5), maximum = TRUE, tol = 1e-12)$maximum
    H <- if (type == "observed") {
      e <- 1e-4; -(h(bh + e) - 2 * h(bh) + h(bh - e)) / e^2
    } else sum(fisher_w(exp(eta0 + bh))) + 1 / sdg^2
    tot <- tot + h(bh) + 0.5 * log(2 * pi) - 0.5 * log(H)
  }
  unname(tot)
}

out <- list(versions = versions_block())

# NB2 (sim_nb2, case G20)
d <- read_dataset("sim_nb2", "data")
ft <- glmmTMB(y ~ x + (1 | g), data = d, family = nbinom2)
b <- fixef(ft)$cond; sdg <- attr(VarCorr(ft)$cond$g, "stddev"); th <- sigma(ft)
ld <- function(y, mu) dnbinom(y, size = th, mu = mu, log = TRUE)
fw <- function(mu) mu / (1 + mu / th)
dfun <- glmer(y ~ x + (1 | g), data = d, family = MASS::negative.binomial(th), devFunOnly = TRUE)
out$nbinom2 <- list(
  at = "glmmTMB estimates of case G20 (beta, sd, theta)",
  glmmTMB_logLik = as.numeric(logLik(ft)),
  laplace_observed = laplace_1d(d, b, sdg, ld, fw, "observed"),
  laplace_expected = laplace_1d(d, b, sdg, ld, fw, "expected"),
  lme4_devfun_logLik = -0.5 * dfun(c(sdg, b)))

# Poisson on the same NB2 data (only the approximation is compared here, not
# the fit; canonical link, so observed = expected).
fp <- glmmTMB(y ~ x + (1 | g), data = d, family = poisson)
b <- fixef(fp)$cond; sdg <- attr(VarCorr(fp)$cond$g, "stddev")
ld <- function(y, mu) dpois(y, mu, log = TRUE); fw <- function(mu) mu
dfun <- glmer(y ~ x + (1 | g), data = d, family = poisson, devFunOnly = TRUE)
out$poisson <- list(
  at = "glmmTMB Poisson estimates on the sim_nb2 data (canonical link: both coincide)",
  glmmTMB_logLik = as.numeric(logLik(fp)),
  laplace_observed = laplace_1d(d, b, sdg, ld, fw, "observed"),
  laplace_expected = laplace_1d(d, b, sdg, ld, fw, "expected"),
  lme4_devfun_logLik = -0.5 * dfun(c(sdg, b)))

# Gamma-log (sim_gamma, case G15): glmmTMB uses the ML shape
d <- read_dataset("sim_gamma", "data")
fg <- glmmTMB(y ~ x + (1 | g), data = d, family = Gamma(link = "log"))
b <- fixef(fg)$cond; sdg <- attr(VarCorr(fg)$cond$g, "stddev"); shp <- 1 / sigma(fg)^2
ld <- function(y, mu) dgamma(y, shape = shp, scale = mu / shp, log = TRUE)
fw <- function(mu) rep(shp, length(mu))
out$gamma_log <- list(
  at = "glmmTMB estimates of case G15 (beta, sd, shape = 1/sigma^2)",
  glmmTMB_logLik = as.numeric(logLik(fg)),
  laplace_observed = laplace_1d(d, b, sdg, ld, fw, "observed"),
  laplace_expected = laplace_1d(d, b, sdg, ld, fw, "expected"),
  note = "lme4's Gamma logLik uses a plug-in shape (see gamma_lme4 in G14), so no lme4 value is comparable here")

out$conclusion <- "glmmTMB = Laplace with the observed Hessian; lme4 = Laplace with the expected (Fisher) information from its PIRLS weights (identical for canonical links)."
write_ref_json(out, "laplace_conventions.json")
print(jsonlite::toJSON(out[-1], auto_unbox = TRUE, digits = 12, pretty = TRUE))
