# Which Laplace approximation does each engine use? At the same parameter
# values, recompute the marginal log-likelihood of a one-grouping-factor
# random-intercept model group by group (1-d integrals) with
#   (a) the observed curvature  H = -d^2/db^2 [log p(y|b) + log N(b; 0, sd^2)]
#   (b) the expected (Fisher) curvature  H = sum_i w_i + 1/sd^2,
#       w_i = prior weight * (dmu/deta)^2 / Var(y_i)  (lme4's PIRLS weights)
# and compare with glmmTMB's logLik and with lme4's deviance function.
# For canonical links (Poisson-log, binomial-logit) (a) = (b); for NB2-log,
# Gamma-log and binomial-cloglog they differ. Writes laplace_conventions.json.
#
# Run from this folder:  Rscript check_laplace_conventions.R

source("glmm_ref_utils.R")

# eta0: fixed-effect linear predictor per row; g: grouping factor;
# logdens(rows, eta): log p(y | eta) summed over the given rows;
# fisher_w(rows, eta): PIRLS weights at eta for those rows.
laplace_1d <- function(eta0, g, sdg, logdens, fisher_w, type) {
  tot <- 0
  for (lev in levels(g)) {
    i <- which(g == lev)
    h <- function(b) logdens(i, eta0[i] + b) + dnorm(b, 0, sdg, log = TRUE)
    bh <- optimize(h, c(-6, 6), maximum = TRUE, tol = 1e-12)$maximum
    H <- if (type == "observed") {
      e <- 1e-4; -(h(bh + e) - 2 * h(bh) + h(bh - e)) / e^2
    } else sum(fisher_w(i, eta0[i] + bh)) + 1 / sdg^2
    tot <- tot + h(bh) + 0.5 * log(2 * pi) - 0.5 * log(H)
  }
  unname(tot)
}

out <- list(versions = versions_block())

# --- NB2, log link (sim_nb2, case G20)
d <- read_dataset("sim_nb2", "data")
ft <- glmmTMB(y ~ x + (1 | g), data = d, family = nbinom2)
b <- fixef(ft)$cond; sdg <- attr(VarCorr(ft)$cond$g, "stddev"); th <- sigma(ft)
eta0 <- drop(cbind(1, d$x) %*% b)
ld <- function(i, eta) sum(dnbinom(d$y[i], size = th, mu = exp(eta), log = TRUE))
fw <- function(i, eta) { mu <- exp(eta); mu / (1 + mu / th) }
dfun <- glmer(y ~ x + (1 | g), data = d, family = MASS::negative.binomial(th), devFunOnly = TRUE)
out$nbinom2_log <- list(
  at = "glmmTMB estimates of case G20 (beta, sd, theta)",
  glmmTMB_logLik = as.numeric(logLik(ft)),
  laplace_observed = laplace_1d(eta0, d$g, sdg, ld, fw, "observed"),
  laplace_expected = laplace_1d(eta0, d$g, sdg, ld, fw, "expected"),
  lme4_devfun_logLik = -0.5 * dfun(c(sdg, b)))

# --- Poisson, log link, on the same data (canonical: (a) = (b))
fp <- glmmTMB(y ~ x + (1 | g), data = d, family = poisson)
b <- fixef(fp)$cond; sdg <- attr(VarCorr(fp)$cond$g, "stddev")
eta0 <- drop(cbind(1, d$x) %*% b)
ld <- function(i, eta) sum(dpois(d$y[i], exp(eta), log = TRUE))
fw <- function(i, eta) exp(eta)
dfun <- glmer(y ~ x + (1 | g), data = d, family = poisson, devFunOnly = TRUE)
out$poisson_log <- list(
  at = "glmmTMB Poisson estimates on the sim_nb2 data (only the approximation is compared)",
  glmmTMB_logLik = as.numeric(logLik(fp)),
  laplace_observed = laplace_1d(eta0, d$g, sdg, ld, fw, "observed"),
  laplace_expected = laplace_1d(eta0, d$g, sdg, ld, fw, "expected"),
  lme4_devfun_logLik = -0.5 * dfun(c(sdg, b)))

# --- binomial, cloglog link (cbpp, case G12): evaluated at lme4's estimates
cb <- read_dataset("cbpp", "data")
fc <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cb,
            family = binomial(link = "cloglog"))
b <- fixef(fc); sdg <- getME(fc, "theta")[[1]]
eta0 <- drop(getME(fc, "X") %*% b)
ld <- function(i, eta) sum(dbinom(cb$incidence[i], cb$size[i], 1 - exp(-exp(eta)), log = TRUE))
fw <- function(i, eta) {
  p <- 1 - exp(-exp(eta)); dmu <- exp(eta - exp(eta))
  cb$size[i] * dmu^2 / (p * (1 - p))
}
fl <- glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cb,
              family = binomial(link = "cloglog"))
out$binomial_cloglog <- list(
  at = "lme4 estimates of case G12",
  lme4_logLik = as.numeric(logLik(fc)),
  laplace_observed = laplace_1d(eta0, cb$herd, sdg, ld, fw, "observed"),
  laplace_expected = laplace_1d(eta0, cb$herd, sdg, ld, fw, "expected"),
  glmmTMB_fit_logLik = as.numeric(logLik(fl)),
  note = "glmmTMB_fit_logLik is glmmTMB's own optimum (observed-Hessian Laplace) for the same model")

# --- Gamma, log link (sim_gamma, case G15): glmmTMB's ML shape
d <- read_dataset("sim_gamma", "data")
fg <- glmmTMB(y ~ x + (1 | g), data = d, family = Gamma(link = "log"))
b <- fixef(fg)$cond; sdg <- attr(VarCorr(fg)$cond$g, "stddev"); shp <- 1 / sigma(fg)^2
eta0 <- drop(cbind(1, d$x) %*% b)
ld <- function(i, eta) sum(dgamma(d$y[i], shape = shp, scale = exp(eta) / shp, log = TRUE))
fw <- function(i, eta) rep(shp, length(i))
out$gamma_log <- list(
  at = "glmmTMB estimates of case G15 (beta, sd, shape = 1/sigma^2)",
  glmmTMB_logLik = as.numeric(logLik(fg)),
  laplace_observed = laplace_1d(eta0, d$g, sdg, ld, fw, "observed"),
  laplace_expected = laplace_1d(eta0, d$g, sdg, ld, fw, "expected"),
  note = "lme4's Gamma logLik uses a plug-in shape (see gamma_lme4 in G14), so no lme4 value is comparable here")

out$conclusion <- "glmmTMB = Laplace with the observed Hessian of the joint log-density; lme4 = Laplace with the expected (Fisher) information from its PIRLS weights. Identical for canonical links (binomial-logit, Poisson-log); they differ for NB2-log, Gamma-log, binomial-cloglog/probit."
write_ref_json(out, "laplace_conventions.json")
print(jsonlite::toJSON(out[-1], auto_unbox = TRUE, digits = 12, pretty = TRUE))
