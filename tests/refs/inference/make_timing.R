# Case 11: timing references (elapsed seconds from system.time) plus InstEval's Satterthwaite table.
#   InstEval  y ~ service + dept + (1 | s) + (1 | d) + (1 | dept:service), REML:
#     lme4::lmer fit, lmerTest::lmer fit (which also computes the variance-parameter Hessian and
#     Jacobians that Satterthwaite needs), then summary(fit, ddf = "Satterthwaite") and
#     anova(fit, type = 3), each timed separately.
#   confint(method = "profile") on sleepstudy (Days | Subject) ML (case 1), re-timed here; the
#   case 5 REML / ML profile timings are read from the arabidopsis_*.json files written by
#   make_arabidopsis.R.
# Run from tests/refs/inference/ in the background with a 15-minute cap:
#   timeout 900 Rscript make_timing.R > timing.log 2>&1 &
# A partial JSON is written after every step, so a timeout still leaves the finished parts.
source("common.R")

res <- list(case = "timing", description = "elapsed-time references (system.time()[['elapsed']], seconds) and the InstEval Satterthwaite table",
            engine = "lme4 / lmerTest", versions = versions(),
            machine = list(nproc = parallel::detectCores(), sysname = Sys.info()[["sysname"]],
                           note = "single R process; timings are machine dependent and only indicative"))
out_file <- "timing_insteval_profile.json"
flush_res <- function() { res$status <- status_of(res); save_json(res, out_file) }

# ---- sleepstudy case 1 ML profile (re-timed) ---------------------------------------------------
sleepstudy <- lme4::sleepstudy
fit1 <- lmerTest::lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)
p1 <- run_item(confint(fit1, method = "profile", oldNames = FALSE),
               call = 'confint(lmerTest::lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE), method = "profile", oldNames = FALSE)')
res$sleepstudy_slope_ml_confint_profile <- p1

# ---- case 5 timings from the arabidopsis JSONs ------------------------------------------------
for (f in c("arabidopsis_nutrient_popu_gen_reml.json", "arabidopsis_intercept_popu_gen_ml.json")) {
  if (file.exists(f)) {
    j <- fromJSON(f, simplifyVector = FALSE)
    res[[sub("\\.json$", "", paste0(f, "_confint_profile"))]] <- list(
      call = j$call, confint_call = j$confint_profile$call, elapsed_s = j$confint_profile$elapsed_s,
      fit_elapsed_s = j$fit_info$elapsed_s, source_file = f,
      n_warnings = length(j$confint_profile$warnings))
  }
}
names(res) <- sub("\\.json_confint_profile$", "_confint_profile", names(res))
flush_res()

# ---- InstEval ---------------------------------------------------------------------------------
InstEval <- lme4::InstEval
res$insteval <- list(dataset = list(name = "InstEval", source = "lme4::InstEval (no CSV written: 73421 rows)",
                                    nrow = nrow(InstEval),
                                    levels = list(service = I(levels(InstEval$service)), dept = I(levels(InstEval$dept)))),
                     formula = "y ~ service + dept + (1 | s) + (1 | d) + (1 | dept:service)")
f_ie <- y ~ service + dept + (1 | s) + (1 | d) + (1 | dept:service)
it0 <- run_item(lme4::lmer(f_ie, data = InstEval, REML = TRUE), conv = function(v) NULL,
                call = "lme4::lmer(y ~ service + dept + (1 | s) + (1 | d) + (1 | dept:service), data = InstEval, REML = TRUE)")
res$insteval$lme4_fit <- it0[c("call", "warnings", "messages", "error", "elapsed_s")]
fit0 <- value_of(it0)
if (!is.null(fit0)) res$insteval$lme4_basics <- merMod_basics(fit0)[c("logLik", "REMLcrit", "fixef", "sigma", "theta", "VarCorr", "ngrps", "nobs")]
rm(fit0); invisible(gc())
cat("lme4 fit", it0$elapsed_s, "s\n"); flush_res()

it1 <- run_item(lmerTest::lmer(f_ie, data = InstEval, REML = TRUE), conv = function(v) NULL,
                call = "lmerTest::lmer(y ~ service + dept + (1 | s) + (1 | d) + (1 | dept:service), data = InstEval, REML = TRUE)")
res$insteval$lmerTest_fit <- it1[c("call", "warnings", "messages", "error", "elapsed_s")]
res$insteval$lmerTest_fit$note <- "lmerTest::lmer = lme4 fit + numerical Hessian of the REML criterion in the variance parameters + Jacobian of vcov(beta) (what Satterthwaite needs)"
fit <- value_of(it1)
cat("lmerTest fit", it1$elapsed_s, "s\n"); flush_res()

if (!is.null(fit)) {
  s1 <- run_item(summary(fit, ddf = "Satterthwaite")$coefficients,
                 call = 'summary(fit, ddf = "Satterthwaite")$coefficients')
  res$insteval$summary_satterthwaite <- s1
  cat("summary Satterthwaite", s1$elapsed_s, "s\n"); flush_res()
  a3 <- run_item(anova(fit, type = 3, ddf = "Satterthwaite"), call = 'anova(fit, type = 3, ddf = "Satterthwaite")')
  res$insteval$anova_type3_satterthwaite <- a3
  cat("anova type 3", a3$elapsed_s, "s\n")
  res$insteval$vcov_varpar <- recs(fit@vcov_varpar)
  res$insteval$vcov_varpar_note <- "lmerTest's asymptotic covariance of the variance parameters (theta * sigma scale, then sigma), from 2 * solve(Hessian of the deviance)"
  flush_res()
}
cat("done\n")
