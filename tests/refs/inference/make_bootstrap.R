# Case 8: lme4 parametric bootstrap (bootMer, nsim = 2000) and confint(method = "boot", nsim = 500)
#         on sleepstudy Reaction ~ Days + (Days | Subject), ML.
# Case 9: pbkrtest::PBmodcomp (nsim = 1000) for (Days | Subject) vs (1 | Subject) and for
#         Days vs intercept-only fixed part, all ML.
# Run from tests/refs/inference/:  Rscript make_bootstrap.R   (a few minutes)
source("common.R")

sleepstudy <- lme4::sleepstudy
write_dataset(sleepstudy, "sleepstudy", "lme4::sleepstudy (all 180 rows, as shipped)")
ds <- list(name = "sleepstudy", file = "sleepstudy.csv", levels_file = "sleepstudy.levels.json",
           source = "lme4::sleepstudy", nrow = nrow(sleepstudy))

# ---- case 8 -------------------------------------------------------------------------------
call <- "lme4::lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)"
fm <- fit_model(call)
fit <- fm$fit
stat_fun <- function(m) c(fixef(m), sigma = sigma(m), sd = as.data.frame(VarCorr(m))$sdcor)
boot_call <- paste0('bootMer(fit, function(m) c(fixef(m), sigma = sigma(m), sd = as.data.frame(VarCorr(m))$sdcor), ',
                    'nsim = 2000, seed = 1, use.u = FALSE, type = "parametric")')
bt <- run_item(bootMer(fit, stat_fun, nsim = 2000, seed = 1, use.u = FALSE, type = "parametric"),
               conv = function(b) NULL, call = boot_call)
b <- value_of(bt)
tt <- b$t
vc0 <- as.data.frame(VarCorr(fit))
nsim <- nrow(tt)
na_rows <- sum(!stats::complete.cases(tt))
col_stats <- lapply(colnames(tt), function(nm) {
  x <- tt[, nm]; x <- x[is.finite(x)]; n <- length(x)
  m <- mean(x); s <- sd(x)
  m2 <- mean((x - m)^2); m4 <- mean((x - m)^4)
  kex <- m4 / m2^2 - 3
  data.frame(term = nm, t0 = unname(b$t0[nm]), n_ok = n, n_na = sum(!is.finite(tt[, nm])),
             mean = m, sd = s, q2.5 = unname(quantile(x, 0.025)), q97.5 = unname(quantile(x, 0.975)),
             kurtosis_excess = kex, mcse_sd = s * sqrt((kex + 2) / (4 * n)),
             check.names = FALSE, stringsAsFactors = FALSE)
})
col_stats <- do.call(rbind, col_stats)
boot_res <- list(
  call = boot_call,
  statistic_names = I(colnames(tt)),
  statistic_meaning = list(
    "(Intercept)" = "fixef", "Days" = "fixef", "sigma" = "residual SD",
    sd1 = "as.data.frame(VarCorr)$sdcor[1]: SD of (Intercept) | Subject",
    sd2 = "sdcor[2]: SD of Days | Subject",
    sd3 = "sdcor[3]: correlation (Intercept), Days | Subject",
    sd4 = "sdcor[4]: residual SD (same as sigma)"),
  varcorr_rows = drecs(transform(vc0, var1 = as.character(var1), var2 = as.character(var2))),
  t0 = nv(b$t0),
  boot_sd = nv(apply(tt, 2, sd, na.rm = TRUE)),
  nsim = nsim, n_na_replicates = na_rows,
  n_na_note = "replicates with any non-finite statistic; per_statistic$n_na says which column (the correlation sd3 is NaN when a refit puts an SD at 0)",
  per_statistic = col_stats,
  formulas = list(
    sd = "sd(t[, j]) over the non-NA replicates (R's sd, n - 1 denominator)",
    quantiles = "quantile(x, c(0.025, 0.975)), R type 7",
    kurtosis_excess = "m4 / m2^2 - 3 with central moments m_k = mean((x - mean(x))^k)",
    mcse_sd = "sd * sqrt((kurtosis_excess + 2) / (4 * n_ok))"),
  boot_fail_msgs = I(as.character(names(attr(b, "boot.fail.msgs")))),
  boot_fail_counts = if (length(attr(b, "boot.fail.msgs"))) nv(attr(b, "boot.fail.msgs")) else NULL,
  boot_all_msgs = lapply(attr(b, "boot.all.msgs"), function(x) if (length(x)) nv(x) else NULL),
  warnings = bt$warnings, messages = bt$messages, error = bt$error,
  elapsed_s = bt$elapsed_s,
  rng_note = "bootMer(seed = 1) calls set.seed(1) then simulate(); replicate values depend on R's RNG and are not reproducible outside R: compare bootstrap SDs within their Monte Carlo SEs"
)

ci_boot <- run_item(confint(fit, method = "boot", nsim = 500, seed = 1, oldNames = FALSE),
                    call = 'confint(fit, method = "boot", nsim = 500, seed = 1, oldNames = FALSE)  # boot.type = "perc"')

res <- c(list(case = "sleepstudy_slope_ml_bootstrap",
              description = "sleepstudy Reaction ~ Days + (Days | Subject), ML: parametric bootstrap (bootMer, nsim = 2000) and bootstrap percentile confint (nsim = 500)",
              engine = "lme4::bootMer / confint.merMod", versions = versions(), dataset = ds,
              call = call, fit_info = fm$info),
         merMod_basics(fit),
         list(bootMer = boot_res, confint_boot = ci_boot))
res$status <- status_of(res)
save_json(res, "sleepstudy_slope_ml_bootstrap.json")
cat("bootMer elapsed", bt$elapsed_s, "s; confint boot elapsed", ci_boot$elapsed_s, "s\n")

# ---- case 9 -------------------------------------------------------------------------------
pb_case <- function(case, large_call, small_call, desc) {
  fl <- fit_model(large_call); fs <- fit_model(small_call)
  large <- fl$fit; small <- fs$fit
  it <- run_item({ set.seed(1); PBmodcomp(large, small, nsim = 1000, seed = 1) },
                 conv = function(p) NULL, call = "set.seed(1); PBmodcomp(large, small, nsim = 1000, seed = 1)")
  pb <- value_of(it)
  sm <- tryCatch(summary(pb)$test, error = function(e) NULL)
  out <- list(case = case, description = desc, engine = "pbkrtest::PBmodcomp",
              versions = versions(), dataset = ds,
              large = c(list(call = large_call, fit_info = fl$info), merMod_basics(large)[c("method", "logLik", "logLik_df", "deviance", "fixef", "sigma")]),
              small = c(list(call = small_call, fit_info = fs$info), merMod_basics(small)[c("method", "logLik", "logLik_df", "deviance", "fixef", "sigma")]),
              PBmodcomp = list(
                call = it$call,
                LRT_stat = unname(pb$test["LRT", "stat"]),
                df = unname(pb$test["LRT", "df"]),
                p_chi2 = unname(pb$test["LRT", "p.value"]),
                p_PB = unname(pb$test["PBtest", "p.value"]),
                nsim_requested = 1000,
                nsim_done = unname(pb$samples[["nsim"]]),
                nsim_used = unname(pb$samples[["npos"]]),
                n_extreme = pb$n.extreme,
                test = recs(pb$test),
                summary_test = recs(sm),
                LRTstat = nv(pb$LRTstat),
                ref_mean = mean(pb$ref), ref_var = var(as.numeric(pb$ref)),
                ref_quantiles = nv(quantile(as.numeric(pb$ref), c(0.5, 0.9, 0.95, 0.99))),
                ctime_s = unname(pb$ctime),
                elapsed_s = it$elapsed_s,
                warnings = it$warnings, messages = it$messages, error = it$error,
                notes = I(c(
                  "p_PB = (1 + n_extreme) / (1 + nsim_used), nsim_used = number of simulated LRTs > 0 (pbkrtest drops the others)",
                  "pbkrtest 0.5.2's PBrefdist.merMod ignores its seed argument; set.seed(1) immediately before PBmodcomp makes the run reproducible (cl = 1 -> sequential mclapply)",
                  "summary_test adds pbkrtest's Gamma / Bartlett / F approximations (summary(pb)$test)"))))
  out$status <- status_of(out)
  save_json(out, paste0(case, ".json"))
  cat(case, "PBmodcomp elapsed", it$elapsed_s, "s\n")
}
pb_case("sleepstudy_pbmodcomp_slope_vs_intercept",
        "lme4::lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)",
        "lme4::lmer(Reaction ~ Days + (1 | Subject), data = sleepstudy, REML = FALSE)",
        "case 9a: parametric bootstrap LRT of the random Days slope (+ correlation), ML")
pb_case("sleepstudy_pbmodcomp_days_fixed",
        "lme4::lmer(Reaction ~ Days + (1 | Subject), data = sleepstudy, REML = FALSE)",
        "lme4::lmer(Reaction ~ 1 + (1 | Subject), data = sleepstudy, REML = FALSE)",
        "case 9b: parametric bootstrap LRT of the fixed Days effect, random intercept, ML")
