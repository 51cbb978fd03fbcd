# Case 10: nlme intervals(fit, which = "all"), level 0.95, for
#   gls(log(1 + total.fruits) ~ rack + nutrient + amd + status, Arabidopsis_f) ML and REML,
#   lme(distance ~ age + Sex, random = ~ 1 | Subject, Orthodont, REML),
#   nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), Theoph, fixed = lKe + lKa + lCl ~ 1,
#        random = pdDiag(lKe + lKa + lCl ~ 1), method = "ML")  (datasets::Theoph is a groupedData: groups ~ Subject)
# Run from tests/refs/inference/:  Rscript make_nlme_intervals.R
source("common.R")
fixef <- nlme::fixef

Arabidopsis <- read_dataset("Arabidopsis_f.csv", "Arabidopsis_f.levels.json")
Orthodont <- nlme::Orthodont                      # groupedData, as in nlme's examples
Theoph <- datasets::Theoph                        # groupedData conc ~ Time | Subject (ships in datasets)
write_dataset(as.data.frame(Orthodont), "Orthodont", "nlme::Orthodont (groupedData -> data.frame; Subject is an ordered factor)",
              note = "an ordered grouping factor only fixes the level order; lmer treats it as an ordinary grouping factor")
write_dataset(as.data.frame(Theoph), "Theoph", "datasets::Theoph (groupedData conc ~ Time | Subject -> data.frame; Subject is an ordered factor)",
              note = "nlme() on the groupedData groups by Subject; Dose is mg/kg, Time in hours")

ds <- list(
  Arabidopsis = list(name = "Arabidopsis_f", file = "Arabidopsis_f.csv", levels_file = "Arabidopsis_f.levels.json",
                     source = "lme4::Arabidopsis with nutrient, rack as factors (round2 copy)", nrow = nrow(Arabidopsis)),
  Orthodont = list(name = "Orthodont", file = "Orthodont.csv", levels_file = "Orthodont.levels.json",
                   source = "nlme::Orthodont", nrow = nrow(Orthodont)),
  Theoph = list(name = "Theoph", file = "Theoph.csv", levels_file = "Theoph.levels.json",
                source = "datasets::Theoph (groupedData, grouping ~ Subject)", nrow = nrow(Theoph)))

conv_intervals <- function(iv) {
  out <- list()
  for (nm in names(iv)) {
    x <- iv[[nm]]
    if (nm == "reStruct") {
      out$reStruct <- lapply(x, recs)          # one table per grouping level; rows sd(...), cor(...)
    } else if (is.matrix(x)) {
      out[[nm]] <- recs(x)                     # fixed / coef / corStruct / varStruct
    } else if (is.numeric(x)) {
      out[[nm]] <- nv(x)                       # sigma: lower, est., upper
    }
  }
  out$level <- attr(iv, "level")
  out
}

nlme_basics <- function(fit) {
  ll <- logLik(fit)
  o <- list(method = fit$method, nobs = nobs(fit), logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
            AIC = AIC(fit), BIC = BIC(fit), fixef = nv(if (inherits(fit, "gls")) coef(fit) else fixef(fit)),
            sigma = fit$sigma,
            tTable = recs(summary(fit)$tTable))
  if (!inherits(fit, "gls")) {
    # nlme's VarCorr() is a character matrix (7 digits); rebuild it at full precision
    re <- fit$modelStruct$reStruct
    o$random <- lapply(seq_along(re), function(i) {
      cv <- as.matrix(re[[i]]) * fit$sigma^2
      list(sd = nv(sqrt(diag(cv))), cov = recs(cv), corr = recs(cov2cor(cv)))
    })
    names(o$random) <- names(re)
    o$random_note <- "per grouping level: cov = as.matrix(reStruct[[g]]) * sigma^2 (full precision, unlike VarCorr's printed strings)"
    o$ngrps <- nv(fit$dims$ngrps[seq_len(fit$dims$Q)])
  }
  o
}

cases <- list(
  list(case = "arabidopsis_gls_ml_intervals", ds = "Arabidopsis",
       call = 'gls(log(1 + total.fruits) ~ rack + nutrient + amd + status, data = Arabidopsis, method = "ML")'),
  list(case = "arabidopsis_gls_reml_intervals", ds = "Arabidopsis",
       call = 'gls(log(1 + total.fruits) ~ rack + nutrient + amd + status, data = Arabidopsis, method = "REML")'),
  list(case = "orthodont_lme_intercept_reml_intervals", ds = "Orthodont",
       call = 'lme(distance ~ age + Sex, random = ~ 1 | Subject, data = Orthodont, method = "REML")'),
  list(case = "theoph_nlme_diag3_ml_intervals", ds = "Theoph",
       call = 'nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph, fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKe + lKa + lCl ~ 1), method = "ML")',
       fallback = 'nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph, fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1), method = "ML")'),
  # the diag3 fit converges but puts the lKe random-effect variance on the boundary (~1e-10), so its
  # apVar is not positive definite and intervals(which = "all") fails; the reduced model is also given
  list(case = "theoph_nlme_diag2_ml_intervals", ds = "Theoph",
       call = 'nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph, fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1), method = "ML")')
)

for (cs in cases) {
  call <- cs$call
  fit_attempts <- list()
  it <- run_item(eval(parse(text = call)), conv = function(v) NULL, call = call)
  fit <- value_of(it)
  if (!is.null(cs$fallback)) {
    fit_attempts[[1]] <- it[c("call", "warnings", "messages", "error", "elapsed_s")]
    if (is.null(fit)) {
      call <- cs$fallback
      it <- run_item(eval(parse(text = call)), conv = function(v) NULL, call = call)
      fit <- value_of(it)
      fit_attempts[[2]] <- it[c("call", "warnings", "messages", "error", "elapsed_s")]
    }
  }
  res <- list(case = cs$case, description = paste("nlme intervals(fit, which = 'all'), level 0.95:", call),
              engine = "nlme", versions = versions(), dataset = ds[[cs$ds]], call = call,
              fit_info = it[c("warnings", "messages", "error", "elapsed_s")])
  if (length(fit_attempts)) res$fit_attempts <- fit_attempts
  if (!is.null(fit)) {
    res <- c(res, nlme_basics(fit))
    iv <- run_item(intervals(fit, level = 0.95, which = "all"), conv = conv_intervals,
                   call = 'intervals(fit, level = 0.95, which = "all")')
    res$intervals <- iv
    if (length(iv$error)) {
      res$intervals_fixed <- run_item(intervals(fit, level = 0.95, which = "fixed"), conv = conv_intervals,
                                      call = 'intervals(fit, level = 0.95, which = "fixed")  # after which = "all" failed')
      res$sigma_note <- "sigma here is the point estimate only (intervals for it failed with which = 'all')"
    }
    res$intervals_note <- "each table: lower / est. / upper; reStruct rows are nlme's names (sd(...), cor(...,...)); sigma is the residual SD; intervals for variance parameters use nlme's apVar (log-sd / Fisher-z scale, back-transformed)"
  }
  if (cs$case == "theoph_nlme_diag3_ml_intervals") res$notes <- I(c(
    "the fit 'converges' (no error, no warning) but the lKe random-effect SD is ~1.6e-5 (boundary), so the apVar of the variance parameters is not positive definite and intervals(which = 'all') errors; intervals(which = 'fixed') is given instead, and theoph_nlme_diag2_ml_intervals.json holds the fallback model random = pdDiag(lKa + lCl ~ 1) with full intervals",
    "the diag3 logLik (-177.0235004) is slightly BELOW the nested diag2 model's (-177.0214391): nlme's alternating PNLS/LME iterations stop short near the boundary (both are nlme's Lindstrom-Bates approximate logLik, each at its own linearization point); tests/refs/theoph_nlme_diag3_ml.json (fitted with start = c(lKe = -2.5, lKa = 0.5, lCl = -3)) has -177.0234493"))
  res$status <- status_of(res)
  save_json(res, paste0(cs$case, ".json"))
}
