# glmmTMB "twins" of lme4 reference cases (G22-G25, G27) and one more lme4
# AGQ case (G26), in the layout of make_glmm_refs.R (same helpers, same JSON
# fields). Writes refs/G22..G27*.json and data/sim_zinb.{csv,levels.json};
# leaves every other file alone.
#
# Run from this folder:  Rscript make_glmm_refs_twins.R
# (R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5 -- see README.md).
#
# Why twins: glmmTMB's Laplace approximation is the exact one (observed Hessian
# of the joint log-likelihood in u, found by TMB's inner Newton solver, with
# the outer optimum from nlminb on the exact gradient). lme4's uses PIRLS and
# Nelder-Mead/bobyqa, which leaves ~1e-4 differences in parameters (and ~1e-9
# to 1e-6 in logLik) even where the two approximations agree (binomial-logit,
# Poisson-log). The glmmTMB fits let bayesmix's observed-information Laplace be
# compared at tight tolerances.
#
# Timing: elapsed_s is system.time() of the fit, as in make_glmm_refs.R. For
# G22-G24 the lme4 call of the twin (G01, G02, G04) is refitted in the same R
# session right after the glmmTMB fit and its system.time() stored as
# elapsed_lme4_s (with that refit's logLik, to show it is the same fit). Both
# engines are warmed up on a small model first, so one-time costs (loading
# TMB's DLL code paths, first-call JIT of methods) are not in the timings.

source("glmm_ref_utils.R")

ddir <- "data"
rdir <- "refs"

# ==========================================================================
# Data sets (read back from the CSVs written by make_glmm_refs.R)
# ==========================================================================

VerbAgg <- read_dataset("VerbAgg", ddir)
grouseticks <- read_dataset("grouseticks", ddir)
height_scale <- list(center = mean(grouseticks$HEIGHT), scale = sd(grouseticks$HEIGHT),
                     note = "scale(HEIGHT) inside the formula: (HEIGHT - center) / scale, scale = sd(HEIGHT) with divisor n - 1, over all 403 rows")

Arabidopsis_f <- read_dataset("Arabidopsis_f", ddir)
Arabidopsis_f$gen <- factor(Arabidopsis_f$gen)
arab_dataset <- list(file = "data/Arabidopsis_f.csv", levels_file = "data/Arabidopsis_f.levels.json",
                     source = "lme4::Arabidopsis with nutrient, rack, gen as factors",
                     data_prep = "Arabidopsis_f$gen <- factor(Arabidopsis_f$gen)  # levels in numeric order",
                     note = "popu:gen is the interaction of two factors; unused combinations are dropped by lme4/glmmTMB")

cbpp <- read_dataset("cbpp", ddir)
cbpp_dataset <- list(file = "data/cbpp.csv", levels_file = "data/cbpp.levels.json",
                     source = "lme4::cbpp")

# --- Simulated zero-inflated NB2 data: set.seed(5); 40 groups x 15 rows.
# Draw order: group intercepts b, then x, then z, then the structural-zero
# indicator w, then the NB2 counts (drawn for every row).
# Structural zero with probability plogis(-1 + 0.8 z), otherwise NB2 with
# mu = exp(0.8 + 0.5 x + b[g]) and size theta = 2.
set.seed(5)
zinb_true <- list(beta = list("(Intercept)" = 0.8, x = 0.5), sd_g = 0.6, nb_theta = 2,
                  zi_beta = list("(Intercept)" = -1, z = 0.8),
                  zi_link = "logit (structural-zero probability)",
                  n_groups = 40, n_per_group = 15, seed = 5,
                  generator = paste(
                    "set.seed(5); b <- rnorm(40, 0, 0.6); g <- rep(1:40, each = 15);",
                    "x <- rnorm(600); z <- rnorm(600); w <- rbinom(600, 1, plogis(-1 + 0.8 * z));",
                    "y <- ifelse(w == 1, 0, rnbinom(600, size = 2, mu = exp(0.8 + 0.5 * x + b[g])))"))
local({
  b <- rnorm(40, 0, 0.6); g <- rep(1:40, each = 15)
  x <- rnorm(600); z <- rnorm(600); w <- rbinom(600, 1, plogis(-1 + 0.8 * z))
  y <- ifelse(w == 1, 0, rnbinom(600, size = 2, mu = exp(0.8 + 0.5 * x + b[g])))
  sim_zinb <<- data.frame(g = factor(sprintf("g%02d", g)), x = x, z = z, y = y)
  zinb_true$n_structural_zeros <<- sum(w)
})
zinb_true$n_zeros <- sum(sim_zinb$y == 0)
write_dataset(sim_zinb, "sim_zinb", ddir, "simulated in make_glmm_refs_twins.R (set.seed(5))",
              note = "zero-inflation indicator not written (latent)")
sim_zinb <- read_dataset("sim_zinb", ddir)

# ==========================================================================
# Warm-up (not recorded)
# ==========================================================================

invisible(suppressWarnings(suppressMessages({
  glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)
  glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)
})))

# ==========================================================================
# Cases
# ==========================================================================

res <- list()
run_spec <- function(spec) res[[spec$case]] <<- make_case(spec, rdir)

# post-hook for G22-G24: refit the lme4 twin right after the glmmTMB fit
lme4_refit <- function(lme4_case, lme4_call, data_name, data) {
  force(lme4_case); force(lme4_call); force(data_name); force(data)
  function(fit, out) {
    run <- run_call(lme4_call, setNames(list(data), data_name))
    ref <- jsonlite::fromJSON(file.path(rdir, paste0(lme4_case, ".json")), simplifyVector = TRUE)
    ll <- if (is.null(run$fit)) NA_real_ else as.numeric(logLik(run$fit))
    out$elapsed_lme4_s <- run$elapsed
    out$lme4_refit <- list(
      case = lme4_case, call = lme4_call, elapsed_s = run$elapsed,
      logLik = ll, logLik_in_ref = ref$logLik,
      warnings = arr(run$warnings), messages = arr(run$messages), error = run$error,
      note = "lme4 call of the twin refitted in the same R session right after the glmmTMB fit, for timing (elapsed_lme4_s = system.time elapsed)")
    out
  }
}

# comparison block with the lme4 twin's JSON
twin_of <- function(lme4_case) {
  ref <- jsonlite::fromJSON(file.path(rdir, paste0(lme4_case, ".json")), simplifyVector = TRUE)
  function(out) {
    b <- unlist(out$fixef); rb <- unlist(ref$fixef)[names(b)]
    se <- unlist(out$fixef_se); rse <- unlist(ref$fixef_se)[names(se)]
    out$twin_of <- list(
      case = lme4_case, call = ref$call,
      logLik_lme4 = ref$logLik,
      logLik_diff_glmmTMB_minus_lme4 = out$logLik - ref$logLik,
      max_abs_fixef_diff = max(abs(b - rb)),
      max_abs_fixef_se_diff = max(abs(se - rse)),
      note = "binomial-logit / Poisson-log: lme4 and glmmTMB use the same Laplace approximation; differences come from lme4's optimiser stopping and its PIRLS/finite-difference Hessian")
    out
  }
}
with_twin <- function(lme4_case, post = NULL) {
  tw <- twin_of(lme4_case)
  function(fit, out) {
    out <- tw(out)
    if (!is.null(post)) out <- post(fit, out)
    out
  }
}

# --- G22: twin of G01 (VerbAgg, binary, crossed random intercepts)
g01_call <- "glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), data = VerbAgg, family = binomial)"
run_spec(list(
  case = "G22_verbagg_binary_glmmTMB",
  description = "VerbAgg: binary r2 (Y/N factor) with crossed random intercepts for id and item, glmmTMB (twin of G01)",
  call = "glmmTMB(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), data = VerbAgg, family = binomial)",
  data_name = "VerbAgg", data = VerbAgg,
  dataset = list(file = "data/VerbAgg.csv", levels_file = "data/VerbAgg.levels.json",
                 source = "lme4::VerbAgg (used columns only)"),
  post = with_twin("G01_verbagg_binary_laplace",
                   lme4_refit("G01_verbagg_binary_laplace", g01_call, "VerbAgg", VerbAgg)),
  extra = list(response_coding = "r2 is a factor (levels N, Y): glmmTMB (as glm) sets y = 0 for the first level and 1 otherwise")))

# --- G23: twin of G02 (grouseticks)
g02_call <- "glmer(TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), data = grouseticks, family = poisson)"
run_spec(list(
  case = "G23_grouseticks_poisson_glmmTMB",
  description = "grouseticks: Poisson with YEAR factor, scale(HEIGHT), random intercepts BROOD, INDEX (observation level), LOCATION, glmmTMB (twin of G02)",
  call = "glmmTMB(TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), data = grouseticks, family = poisson)",
  data_name = "grouseticks", data = grouseticks,
  dataset = list(file = "data/grouseticks.csv", levels_file = "data/grouseticks.levels.json",
                 source = "lme4::grouseticks"),
  post = with_twin("G02_grouseticks_poisson_laplace",
                   lme4_refit("G02_grouseticks_poisson_laplace", g02_call, "grouseticks", grouseticks)),
  extra = list(scale_HEIGHT = height_scale)))

# --- G24: twin of G04 (Arabidopsis, random intercepts)
arab_rhs <- "nutrient * amd + rack + status + (nutrient | popu) + (1 | popu:gen)"
arab_rhs_int <- "nutrient * amd + rack + status + (1 | popu) + (1 | popu:gen)"
g04_call <- sprintf("glmer(total.fruits ~ %s, data = Arabidopsis_f, family = poisson)", arab_rhs_int)
run_spec(list(
  case = "G24_arabidopsis_poisson_int_glmmTMB",
  description = "Arabidopsis: Poisson, nutrient*amd + rack + status, random intercepts popu and popu:gen, glmmTMB (twin of G04)",
  call = sprintf("glmmTMB(total.fruits ~ %s, data = Arabidopsis_f, family = poisson)", arab_rhs_int),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset,
  post = with_twin("G04_arabidopsis_poisson_int_laplace",
                   lme4_refit("G04_arabidopsis_poisson_int_laplace", g04_call, "Arabidopsis_f", Arabidopsis_f))))

# --- G25: twin of G03 (Arabidopsis, correlated random nutrient slope by popu)
run_spec(list(
  case = "G25_arabidopsis_poisson_slope_glmmTMB",
  description = "Arabidopsis: Poisson, nutrient*amd + rack + status, correlated random nutrient slope by popu, intercept by popu:gen, glmmTMB (twin of G03)",
  call = sprintf("glmmTMB(total.fruits ~ %s, data = Arabidopsis_f, family = poisson)", arab_rhs),
  data_name = "Arabidopsis_f", data = Arabidopsis_f, dataset = arab_dataset,
  post = with_twin("G03_arabidopsis_poisson_slope_laplace")))

# --- G26: cbpp, AGQ with 25 nodes (G layout; same model as round2's A1_cbpp_binomial_agq25)
cbpp_form <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
run_spec(list(
  case = "G26_cbpp_binomial_agq25",
  description = "cbpp, binomial logit, adaptive Gauss-Hermite nAGQ = 25 (same model as A1_cbpp_binomial_agq25, in the G layout)",
  call = sprintf("glmer(%s, data = cbpp, family = binomial, nAGQ = 25)", cbpp_form),
  data_name = "cbpp", data = cbpp, dataset = cbpp_dataset,
  post = function(fit, out) {
    a1 <- jsonlite::fromJSON(file.path(rdir, "A1_cbpp_binomial_agq25.json"), simplifyVector = TRUE)
    out$equivalence_check <- list(
      compared_with = "A1_cbpp_binomial_agq25",
      logLik_diff = out$logLik - a1$logLik,
      logLik_plus_saturated_diff = out$logLik_plus_saturated - a1$logLik_plus_saturated,
      max_abs_fixef_diff = max(abs(unlist(out$fixef) - unlist(a1$fixef)[names(out$fixef)])))
    out
  }))

# --- G27: zero-inflated NB2 with a covariate in the zero-inflation part
run_spec(list(
  case = "G27_simzinb_x_glmmTMB",
  description = "Simulated zero-inflated NB2, random intercept, glmmTMB (nbinom2, ziformula = ~ z)",
  call = "glmmTMB(y ~ x + (1 | g), ziformula = ~ z, data = sim_zinb, family = nbinom2)",
  data_name = "sim_zinb", data = sim_zinb,
  dataset = list(file = "data/sim_zinb.csv", levels_file = "data/sim_zinb.levels.json",
                 source = "simulated in make_glmm_refs_twins.R (set.seed(5))"),
  extra = list(true_parameters = zinb_true)))

# G28 (glmmTMB Gamma log-link on sim_gamma) is not made: it is G15.

# Short table on stdout
for (r in res) {
  o <- r$out
  cat(sprintf("%-40s %-7s logLik=% .10f elapsed=%.3f%s\n", o$case, o$status,
              if (is.null(o$logLik)) NA_real_ else o$logLik, o$elapsed_s,
              if (!is.null(o$elapsed_lme4_s)) sprintf(" lme4=%.3f", o$elapsed_lme4_s) else ""))
}
