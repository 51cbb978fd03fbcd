# Generate the G* GLMM reference fits in refs/ (JSON) with their data in data/
# (CSV + <name>.levels.json), in the layout of ../shared/refs/round2/README.md.
#
# Run from this folder:  Rscript make_glmm_refs.R
# (R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5 -- see README.md).
#
# Every model call is kept as text in the case spec and evaluated verbatim
# (glmm_ref_utils.R::run_call), so a JSON's `call` re-runs as written once its
# data set is loaded under the name given in dataset$name. The data frames
# handed to the calls are the ones read back from the CSVs written here, so the
# CSV + levels file reproduce the fit exactly.

source("glmm_ref_utils.R")

ddir <- "data"
rdir <- "refs"
dir.create(ddir, showWarnings = FALSE)
dir.create(rdir, showWarnings = FALSE)

# ==========================================================================
# Data sets
# ==========================================================================

# --- VerbAgg (lme4): only the columns the model uses, to keep the CSV small.
# r2 is a factor with levels N, Y; glmer codes the first level as 0 (failure)
# and every other level as 1 (success), so the model is for P(r2 == "Y").
VerbAgg <- lme4::VerbAgg[, c("r2", "Anger", "Gender", "btype", "situ", "id", "item")]
write_dataset(VerbAgg, "VerbAgg", ddir, "lme4::VerbAgg (columns r2, Anger, Gender, btype, situ, id, item only)",
              note = "r2: factor N/Y; glmer models P(second level) = P(Y)")
VerbAgg <- read_dataset("VerbAgg", ddir)
stopifnot(isTRUE(all.equal(VerbAgg, lme4::VerbAgg[, names(VerbAgg)], check.attributes = FALSE)))

# --- grouseticks (lme4): all columns (cHEIGHT is the package's own
# HEIGHT - mean; the model uses scale(HEIGHT) computed inside the formula).
grouseticks <- lme4::grouseticks
write_dataset(grouseticks, "grouseticks", ddir, "lme4::grouseticks",
              note = "YEAR factor (95, 96, 97); the model uses scale(HEIGHT) = (HEIGHT - mean) / sd (sd with n - 1)")
grouseticks <- read_dataset("grouseticks", ddir)
stopifnot(isTRUE(all.equal(grouseticks, lme4::grouseticks, check.attributes = FALSE)))
height_scale <- list(center = mean(grouseticks$HEIGHT), scale = sd(grouseticks$HEIGHT),
                     note = "scale(HEIGHT) inside the formula: (HEIGHT - center) / scale, scale = sd(HEIGHT) with divisor n - 1, over all 403 rows")

# --- Arabidopsis: round2's Arabidopsis_f.csv (nutrient, rack as factors); gen
# is an integer column there and is made a factor here (levels in numeric
# order, as factor() does). As a grouping variable this changes nothing.
Arabidopsis_f <- read_dataset("Arabidopsis_f", ddir)
Arabidopsis_f$gen <- factor(Arabidopsis_f$gen)
arab_dataset <- list(file = "data/Arabidopsis_f.csv", levels_file = "data/Arabidopsis_f.levels.json",
                     source = "lme4::Arabidopsis with nutrient, rack, gen as factors",
                     data_prep = "Arabidopsis_f$gen <- factor(Arabidopsis_f$gen)  # levels in numeric order",
                     note = "popu:gen is the interaction of two factors; unused combinations are dropped by lme4/glmmTMB")

# --- cbpp (lme4), as in round2
cbpp <- read_dataset("cbpp", ddir)
cbpp_dataset <- list(file = "data/cbpp.csv", levels_file = "data/cbpp.levels.json",
                     source = "lme4::cbpp")

# --- Simulated Gamma data: set.seed(1); 30 groups x 10 rows.
# Draw order: group intercepts b, then x, then y.
set.seed(1)
gam_true <- list(beta = list("(Intercept)" = 1.0, x = 0.5), sd_g = 0.4, shape = 4,
                 link = "log", n_groups = 30, n_per_group = 10, seed = 1,
                 generator = paste(
                   "set.seed(1); b <- rnorm(30, 0, 0.4); g <- rep(1:30, each = 10);",
                   "x <- rnorm(300); mu <- exp(1 + 0.5 * x + b[g]);",
                   "y <- rgamma(300, shape = 4, rate = 4 / mu)"))
local({
  b <- rnorm(30, 0, 0.4); g <- rep(1:30, each = 10)
  x <- rnorm(300); mu <- exp(1 + 0.5 * x + b[g])
  y <- rgamma(300, shape = 4, rate = 4 / mu)
  sim_gamma <<- data.frame(g = factor(sprintf("g%02d", g)), x = x, y = y)
})
write_dataset(sim_gamma, "sim_gamma", ddir, "simulated in make_glmm_refs.R (set.seed(1))")
sim_gamma <- read_dataset("sim_gamma", ddir)

# --- Simulated Poisson data with a correlated random slope: set.seed(2);
# 40 groups x 12 rows. Draw order: a 40 x 2 standard-normal matrix Z (column-
# wise), b = Z %*% chol(Sigma); then x; then y.
set.seed(2)
ps_true <- list(beta = list("(Intercept)" = 1.0, x = 0.4),
                sd = list("(Intercept)" = 0.5, x = 0.3), corr = 0.4,
                n_groups = 40, n_per_group = 12, seed = 2,
                generator = paste(
                  "set.seed(2); S <- matrix(c(0.25, 0.06, 0.06, 0.09), 2);",
                  "b <- matrix(rnorm(80), 40, 2) %*% chol(S); g <- rep(1:40, each = 12);",
                  "x <- rnorm(480); y <- rpois(480, exp(1 + b[g, 1] + (0.4 + b[g, 2]) * x))"))
local({
  S <- matrix(c(0.5^2, 0.4 * 0.5 * 0.3, 0.4 * 0.5 * 0.3, 0.3^2), 2)
  b <- matrix(rnorm(80), 40, 2) %*% chol(S); g <- rep(1:40, each = 12)
  x <- rnorm(480); y <- rpois(480, exp(1 + b[g, 1] + (0.4 + b[g, 2]) * x))
  sim_pois_slope <<- data.frame(g = factor(sprintf("g%02d", g)), x = x, y = y)
})
write_dataset(sim_pois_slope, "sim_pois_slope", ddir, "simulated in make_glmm_refs.R (set.seed(2))")
sim_pois_slope <- read_dataset("sim_pois_slope", ddir)

# --- Simulated NB2 data: set.seed(3); 50 groups x 20 rows.
set.seed(3)
nb_true <- list(beta = list("(Intercept)" = 1.0, x = 0.5), sd_g = 0.5, nb_theta = 1.5,
                n_groups = 50, n_per_group = 20, seed = 3,
                generator = paste(
                  "set.seed(3); b <- rnorm(50, 0, 0.5); g <- rep(1:50, each = 20);",
                  "x <- rnorm(1000); y <- rnbinom(1000, size = 1.5, mu = exp(1 + 0.5 * x + b[g]))"))
local({
  b <- rnorm(50, 0, 0.5); g <- rep(1:50, each = 20)
  x <- rnorm(1000); y <- rnbinom(1000, size = 1.5, mu = exp(1 + 0.5 * x + b[g]))
  sim_nb2 <<- data.frame(g = factor(sprintf("g%02d", g)), x = x, y = y)
})
write_dataset(sim_nb2, "sim_nb2", ddir, "simulated in make_glmm_refs.R (set.seed(3))")
sim_nb2 <- read_dataset("sim_nb2", ddir)

# --- Simulated zero-inflated Poisson data: set.seed(4); 50 groups x 20 rows.
# Structural zero with probability 0.3 (zi intercept = qlogis(0.3) on the
# logit scale), otherwise Poisson.
set.seed(4)
zip_true <- list(beta = list("(Intercept)" = 1.2, x = 0.4), sd_g = 0.5,
                 zi_prob = 0.3, zi_intercept_logit = qlogis(0.3),
                 n_groups = 50, n_per_group = 20, seed = 4,
                 generator = paste(
                   "set.seed(4); b <- rnorm(50, 0, 0.5); g <- rep(1:50, each = 20);",
                   "x <- rnorm(1000); z <- rbinom(1000, 1, 0.3);",
                   "y <- ifelse(z == 1, 0, rpois(1000, exp(1.2 + 0.4 * x + b[g])))"))
local({
  b <- rnorm(50, 0, 0.5); g <- rep(1:50, each = 20)
  x <- rnorm(1000); z <- rbinom(1000, 1, 0.3)
  y <- ifelse(z == 1, 0, rpois(1000, exp(1.2 + 0.4 * x + b[g])))
  sim_zip <<- data.frame(g = factor(sprintf("g%02d", g)), x = x, y = y)
})
write_dataset(sim_zip, "sim_zip", ddir, "simulated in make_glmm_refs.R (set.seed(4))",
              note = "zero-inflation indicator not written (latent)")
sim_zip <- read_dataset("sim_zip", ddir)

simds <- function(name, seed) list(file = sprintf("data/%s.csv", name),
                                   levels_file = sprintf("data/%s.levels.json", name),
                                   source = sprintf("simulated in make_glmm_refs.R (set.seed(%d))", seed))

# ==========================================================================
# Cases
# ==========================================================================

res <- list()
run_spec <- function(spec) res[[spec$case]] <<- make_case(spec, rdir)

# --- VerbAgg binary, crossed random intercepts
run_spec(list(
  case = "G01_verbagg_binary_laplace",
  description = "VerbAgg: binary r2 (Y/N factor) with crossed random intercepts for id and item, Laplace",
  call = "glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), data = VerbAgg, family = binomial)",
  data_name = "VerbAgg", data = VerbAgg,
  dataset = list(file = "data/VerbAgg.csv", levels_file = "data/VerbAgg.levels.json",
                 source = "lme4::VerbAgg (used columns only)"),
  extra = list(response_coding = "r2 is a factor (levels N, Y): glmer sets y = 0 for the first level and 1 otherwise")))

# --- grouseticks: three random intercepts (INDEX is an observation-level effect)
run_spec(list(
  case = "G02_grouseticks_poisson_laplace",
  description = "grouseticks: Poisson with YEAR factor, scale(HEIGHT), random intercepts BROOD, INDEX (observation level), LOCATION",
  call = "glmer(TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), data = grouseticks, family = poisson)",
  data_name = "grouseticks", data = grouseticks,
  dataset = list(file = "data/grouseticks.csv", levels_file = "data/grouseticks.levels.json",
                 source = "lme4::grouseticks"),
  extra = list(scale_HEIGHT = height_scale)))

# --- Arabidopsis (GLMM tutorial's final model)
arab_rhs <- "nutrient * amd + rack + status + (nutrient | popu) + (1 | popu:gen)"
run_spec(list(
  case = "G03_arabidopsis_poisson_slope_laplace",
  description = "Arabidopsis: Poisson, nutrient*amd + rack + status, correlated random nutrient slope by popu, intercept by popu:gen, Laplace",
  call = sprintf("glmer(total.fruits ~ %s, data = Arabidopsis_f, family = poisson)", arab_rhs),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset))

# Fallback random part, requested if the random-slope model does not converge
# cleanly; fitted in any case so both are available.
arab_rhs_int <- "nutrient * amd + rack + status + (1 | popu) + (1 | popu:gen)"
run_spec(list(
  case = "G04_arabidopsis_poisson_int_laplace",
  description = "Arabidopsis: Poisson, nutrient*amd + rack + status, random intercepts popu and popu:gen, Laplace",
  call = sprintf("glmer(total.fruits ~ %s, data = Arabidopsis_f, family = poisson)", arab_rhs_int),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset))

run_spec(list(
  case = "G05_arabidopsis_nbinom2_glmmTMB",
  description = "Arabidopsis: NB2 (glmmTMB), same fixed and random parts as G03",
  call = sprintf("glmmTMB(total.fruits ~ %s, data = Arabidopsis_f, family = nbinom2)", arab_rhs),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset))

run_spec(list(
  case = "G06_arabidopsis_glmernb",
  description = "Arabidopsis: negative binomial with lme4::glmer.nb, same fixed and random parts as G03",
  call = sprintf("glmer.nb(total.fruits ~ %s, data = Arabidopsis_f)", arab_rhs),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset))

run_spec(list(
  case = "G07_arabidopsis_zipoisson_glmmTMB",
  description = "Arabidopsis: zero-inflated Poisson (glmmTMB, ziformula = ~1), same conditional part as G03",
  call = sprintf("glmmTMB(total.fruits ~ %s, ziformula = ~1, data = Arabidopsis_f, family = poisson)", arab_rhs),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset))

run_spec(list(
  case = "G08_arabidopsis_zinbinom2_glmmTMB",
  description = "Arabidopsis: zero-inflated NB2 (glmmTMB, ziformula = ~1), same conditional part as G03",
  call = sprintf("glmmTMB(total.fruits ~ %s, ziformula = ~1, data = Arabidopsis_f, family = nbinom2)", arab_rhs),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset))

# With the random nutrient slope the NB fits end on the boundary (popu slope SD
# ~0.03, correlation ~ +1: glmmTMB "singular convergence (7)", glmer.nb
# "boundary (singular) fit"). Clean NB references with the intercept-only
# random part (the fallback named for G03):
run_spec(list(
  case = "G05b_arabidopsis_nbinom2_int_glmmTMB",
  description = "Arabidopsis: NB2 (glmmTMB), random intercepts popu and popu:gen (as G04)",
  call = sprintf("glmmTMB(total.fruits ~ %s, data = Arabidopsis_f, family = nbinom2)", arab_rhs_int),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset))

run_spec(list(
  case = "G06b_arabidopsis_glmernb_int",
  description = "Arabidopsis: lme4::glmer.nb, random intercepts popu and popu:gen (as G04)",
  call = sprintf("glmer.nb(total.fruits ~ %s, data = Arabidopsis_f)", arab_rhs_int),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset))

run_spec(list(
  case = "G08b_arabidopsis_zinbinom2_int_glmmTMB",
  description = "Arabidopsis: zero-inflated NB2 (glmmTMB, ziformula = ~1), random intercepts popu and popu:gen",
  call = sprintf("glmmTMB(total.fruits ~ %s, ziformula = ~1, data = Arabidopsis_f, family = nbinom2)", arab_rhs_int),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset))

# --- cbpp: integration variants and links
cbpp_form <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
run_spec(list(
  case = "G09_cbpp_binomial_nagq1",
  description = "cbpp, binomial logit, nAGQ = 1 (Laplace; same model as A1_cbpp_binomial_laplace)",
  call = sprintf("glmer(%s, data = cbpp, family = binomial, nAGQ = 1)", cbpp_form),
  data_name = "cbpp", data = cbpp, dataset = cbpp_dataset))

run_spec(list(
  case = "G10_cbpp_binomial_nagq0",
  description = "cbpp, binomial logit, nAGQ = 0: beta and u optimised jointly by PIRLS inside the theta optimisation (lme4's fast first stage only)",
  call = sprintf("glmer(%s, data = cbpp, family = binomial, nAGQ = 0)", cbpp_form),
  data_name = "cbpp", data = cbpp, dataset = cbpp_dataset,
  extra = list(nAGQ0_note = "nAGQ = 0: the Laplace deviance is minimised over theta only, with beta taken from the PIRLS solution at each theta (beta not optimised on the Laplace objective); logLik is the Laplace value at the result. fixef_se come from RX (no Hessian).")))

run_spec(list(
  case = "G11_cbpp_binomial_agq9",
  description = "cbpp, binomial logit, adaptive Gauss-Hermite nAGQ = 9",
  call = sprintf("glmer(%s, data = cbpp, family = binomial, nAGQ = 9)", cbpp_form),
  data_name = "cbpp", data = cbpp, dataset = cbpp_dataset))

run_spec(list(
  case = "G12_cbpp_cloglog_laplace",
  description = "cbpp, binomial with complementary log-log link, Laplace",
  call = sprintf("glmer(%s, data = cbpp, family = binomial(link = \"cloglog\"))", cbpp_form),
  data_name = "cbpp", data = cbpp, dataset = cbpp_dataset))

# proportion response with prior weights = trials: must equal the cbind fit
run_spec(list(
  case = "G13_cbpp_proportion_weights_laplace",
  description = "cbpp as a proportion incidence/size with weights = size (equivalent to the cbind response)",
  call = "glmer(incidence/size ~ period + (1 | herd), data = cbpp, family = binomial, weights = size)",
  data_name = "cbpp", data = cbpp, dataset = cbpp_dataset,
  post = function(fit, out) {
    ref <- res[["G09_cbpp_binomial_nagq1"]]$fit
    out$equivalence_check <- list(
      compared_with = "G09_cbpp_binomial_nagq1 (cbind response)",
      logLik_diff = as.numeric(logLik(fit)) - as.numeric(logLik(ref)),
      max_abs_fixef_diff = max(abs(fixef(fit) - fixef(ref))),
      theta_diff = unname(getME(fit, "theta") - getME(ref, "theta")))
    out
  }))

# --- Gamma GLMMs on sim_gamma
run_spec(list(
  case = "G14_simgamma_log_laplace",
  description = "Simulated Gamma (log link), random intercept, lme4 Laplace",
  call = "glmer(y ~ x + (1 | g), data = sim_gamma, family = Gamma(link = \"log\"))",
  data_name = "sim_gamma", data = sim_gamma, dataset = simds("sim_gamma", 1),
  extra = list(true_parameters = gam_true)))

run_spec(list(
  case = "G15_simgamma_log_glmmTMB",
  description = "Simulated Gamma (log link), random intercept, glmmTMB",
  call = "glmmTMB(y ~ x + (1 | g), data = sim_gamma, family = Gamma(link = \"log\"))",
  data_name = "sim_gamma", data = sim_gamma, dataset = simds("sim_gamma", 1),
  extra = list(true_parameters = gam_true)))

run_spec(list(
  case = "G16_simgamma_inverse_laplace",
  description = "Simulated Gamma data (generated with a log link) fitted with the inverse link, lme4 Laplace",
  call = "glmer(y ~ x + (1 | g), data = sim_gamma, family = Gamma(link = \"inverse\"))",
  data_name = "sim_gamma", data = sim_gamma, dataset = simds("sim_gamma", 1),
  extra = list(true_parameters = gam_true,
               note = "misspecified link (data generated with log link): for convergence/consistency tests, not recovery")))

run_spec(list(
  case = "G17_simgamma_inverse_glmmTMB",
  description = "Simulated Gamma data (generated with a log link) fitted with the inverse link, glmmTMB",
  call = "glmmTMB(y ~ x + (1 | g), data = sim_gamma, family = Gamma(link = \"inverse\"))",
  data_name = "sim_gamma", data = sim_gamma, dataset = simds("sim_gamma", 1),
  extra = list(true_parameters = gam_true,
               note = "misspecified link (data generated with log link): for convergence/consistency tests, not recovery")))

# glmmTMB starts at beta = 0, i.e. mu = 1/0 with the inverse link, and stops
# with "NaN at starting parameter values"; G17b gives a positive start for the
# intercept (about 1/mean(y)) and a zero slope.
run_spec(list(
  case = "G17b_simgamma_inverse_glmmTMB_start",
  description = "As G17 with start = list(beta = c(0.3, 0)) so that the inverse-link mean is finite at the start",
  call = "glmmTMB(y ~ x + (1 | g), data = sim_gamma, family = Gamma(link = \"inverse\"), start = list(beta = c(0.3, 0)))",
  data_name = "sim_gamma", data = sim_gamma, dataset = simds("sim_gamma", 1),
  extra = list(true_parameters = gam_true,
               note = "misspecified link (data generated with log link): for convergence/consistency tests, not recovery")))

# --- Poisson with a correlated random slope
run_spec(list(
  case = "G18_simpois_slope_laplace",
  description = "Simulated Poisson, correlated random intercept and slope (x | g), lme4 Laplace",
  call = "glmer(y ~ x + (x | g), data = sim_pois_slope, family = poisson)",
  data_name = "sim_pois_slope", data = sim_pois_slope, dataset = simds("sim_pois_slope", 2),
  extra = list(true_parameters = ps_true)))

run_spec(list(
  case = "G19_simpois_slope_glmmTMB",
  description = "Simulated Poisson, correlated random intercept and slope (x | g), glmmTMB (twin of G18)",
  call = "glmmTMB(y ~ x + (x | g), data = sim_pois_slope, family = poisson)",
  data_name = "sim_pois_slope", data = sim_pois_slope, dataset = simds("sim_pois_slope", 2),
  extra = list(true_parameters = ps_true)))

# --- NB2 and zero-inflated Poisson recovery
run_spec(list(
  case = "G20_simnb2_glmmTMB",
  description = "Simulated NB2, random intercept, glmmTMB nbinom2",
  call = "glmmTMB(y ~ x + (1 | g), data = sim_nb2, family = nbinom2)",
  data_name = "sim_nb2", data = sim_nb2, dataset = simds("sim_nb2", 3),
  extra = list(true_parameters = nb_true)))

# lme4 twin of G20 (glmer.nb). Its Laplace approximation uses the expected
# (Fisher) information in log|L|^2, glmmTMB the observed Hessian; for the
# non-canonical NB2/log link they differ slightly (see README.md).
run_spec(list(
  case = "G20b_simnb2_glmernb",
  description = "Simulated NB2, random intercept, lme4::glmer.nb (twin of G20)",
  call = "glmer.nb(y ~ x + (1 | g), data = sim_nb2)",
  data_name = "sim_nb2", data = sim_nb2, dataset = simds("sim_nb2", 3),
  extra = list(true_parameters = nb_true)))

run_spec(list(
  case = "G21_simzip_glmmTMB",
  description = "Simulated zero-inflated Poisson, random intercept, glmmTMB (poisson, ziformula = ~1)",
  call = "glmmTMB(y ~ x + (1 | g), ziformula = ~1, data = sim_zip, family = poisson)",
  data_name = "sim_zip", data = sim_zip, dataset = simds("sim_zip", 4),
  extra = list(true_parameters = zip_true)))

# Summary table (also used for README.md)
summ <- do.call(rbind, lapply(res, function(r) data.frame(
  case = r$out$case, engine = if (is.null(r$out$engine)) NA else r$out$engine,
  status = r$out$status, logLik = if (is.null(r$out$logLik)) NA else r$out$logLik,
  isSingular = if (is.null(r$out$isSingular)) NA else r$out$isSingular,
  elapsed_s = r$out$elapsed_s,
  warnings = paste(r$out$warnings, collapse = " | "),
  messages = paste(r$out$messages, collapse = " | "))))
write.csv(summ, "summary.csv", row.names = FALSE)
print(summ[, 1:6], digits = 12)
