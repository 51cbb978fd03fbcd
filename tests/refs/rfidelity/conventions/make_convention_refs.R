#!/usr/bin/env Rscript
## Reporting conventions of nlme (gls, lme, nlme) versus lme4 (lmer), as
## reference values for bayesmix.  For every fit we record logLik, AIC,
## BIC as the package reports it, the BIC recomputed with log(N), the
## standard errors three ways (summary default, summary without the ML
## sigma adjustment, sqrt(diag(vcov))), the full coefficient table and the
## printed summary, and we check each convention numerically (stopifnot).
##
## Run from the repository root (/work/main):
##     Rscript tests/refs/rfidelity/conventions/make_convention_refs.R
## Writes next to this script: <engine>_<data>_<ml|reml>.json,
## data_Orthodont.csv, data_Orange.csv.  README.md explains the rules.

suppressPackageStartupMessages({
  library(nlme)
  library(lme4)
  library(jsonlite)
})

out_dir <- "tests/refs/rfidelity/conventions"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

versions <- list(
  r_version = R.version.string,
  nlme = as.character(packageVersion("nlme")),
  lme4 = as.character(packageVersion("lme4")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite")),
  generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z")
)

## ------------------------------------------------------------ helpers ----

write_ref <- function(x, file) {
  x$versions <- versions
  jsonlite::write_json(x, file.path(out_dir, file), digits = NA,
                       auto_unbox = TRUE, pretty = TRUE, na = "null")
  cat("wrote", file, "\n")
}

named <- function(v) as.list(v)
empty_obj <- function() structure(list(), names = character(0))

factor_info <- function(d) {
  out <- list()
  for (nm in names(d)) if (is.factor(d[[nm]]))
    out[[nm]] <- list(levels = I(levels(d[[nm]])), ordered = is.ordered(d[[nm]]))
  if (!length(out)) empty_obj() else out
}

write_data <- function(d, file) {
  d <- as.data.frame(d)
  write.csv(d, file.path(out_dir, file), row.names = FALSE)
  back <- read.csv(file.path(out_dir, file), stringsAsFactors = FALSE)
  stopifnot(identical(names(back), names(d)), nrow(back) == nrow(d))
  for (nm in names(d)) {
    if (is.numeric(d[[nm]])) stopifnot(identical(as.numeric(back[[nm]]), as.numeric(d[[nm]])))
    else stopifnot(identical(as.character(back[[nm]]), as.character(d[[nm]])))
  }
}

## Evaluate a call given as text (so the object's call, and hence the
## printed summary, shows the literal arguments).
fit_text <- function(txt) eval(parse(text = txt), envir = globalenv())

summary_text <- function(s) paste(capture.output(print(s)), collapse = "\n")

## coefficient table (matrix) -> {column: {coef: value}} + row order
table_json <- function(tt, colmap) {
  out <- list(rows = I(rownames(tt)))
  for (nm in names(colmap)) out[[nm]] <- named(tt[, colmap[[nm]]])
  out
}

tol <- 1e-10
near <- function(a, b, rel = tol) all(abs(a - b) <= rel * pmax(1, abs(b)))

## Random-effect SD table (full precision) for lme/nlme fits.
varcorr_nlme <- function(fit) {
  rows <- list()
  rs <- fit$modelStruct$reStruct
  for (g in names(rs)) {
    Psi <- as.matrix(rs[[g]]) * fit$sigma^2
    for (i in seq_len(nrow(Psi)))
      rows[[length(rows) + 1]] <- list(group = g, name = rownames(Psi)[i],
                                       StdDev = sqrt(Psi[i, i]))
  }
  rows[[length(rows) + 1]] <- list(group = "Residual", name = "", StdDev = fit$sigma)
  rows
}

## ---------------------------------------------------------- nlme side ----
## Shared record for gls / lme / nlme fits.
nlme_family_record <- function(case_id, call_string, fit, d, data_csv) {
  ll <- logLik(fit)
  df <- attr(ll, "df")
  reml <- fit$method == "REML"
  is_gls <- inherits(fit, "gls")
  N <- fit$dims$N
  p <- if (is_gls) fit$dims$p else length(fixef(fit))
  s <- summary(fit)
  tt <- s$tTable
  ## summary without the ML sigma adjustment: summary.lme has the argument
  ## adjustSigma; summary.gls has no such argument (it is swallowed by '...').
  s_noadj <- summary(fit, adjustSigma = FALSE)
  se_vcov <- sqrt(diag(vcov(fit)))
  k <- sqrt(N / (N - p))

  res <- list(
    case_id = case_id,
    call = call_string,
    engine = paste0("nlme::", class(fit)[1]),
    method = fit$method,
    data = list(csv = data_csv, nrow = nrow(d)),
    factors = factor_info(d),
    logLik = as.numeric(ll),
    AIC = AIC(fit),
    BIC = BIC(fit),
    BIC_lme4_style = -2 * as.numeric(ll) + df * log(N),
    BIC_rule = if (reml) "BIC = -2 logLik + df * log(N - p)" else "BIC = -2 logLik + df * log(N)",
    N = N,
    p = p,
    df = df,
    logLik_attr_nobs = attr(ll, "nobs"),
    sigma = if (is_gls) s$sigma else fit$sigma,
    sigma_printed_source = if (is_gls)
      "'Residual standard error:' line = summary(fit)$sigma = fit$sigma" else
      "'Residual' StdDev under 'Random effects' = fit$sigma",
    fixef = named(coef(fit)[if (is_gls) TRUE else names(fixef(fit))]),
    se_summary = named(tt[, "Std.Error"]),
    se_noadjust = named(s_noadj$tTable[, "Std.Error"]),
    se_vcov = named(se_vcov),
    sqrt_N_over_N_minus_p = k,
    ratio_se_summary_over_se_vcov = named(tt[, "Std.Error"] / se_vcov),
    summary_text = summary_text(s)
  )
  if (is_gls) {
    res$fixef <- named(coef(fit))
    res$tTable <- c(table_json(tt, list(Value = "Value", Std.Error = "Std.Error",
                                        t.value = "t-value", p.value = "p-value")),
                    list(DF = N - p,
                         DF_note = paste("summary.gls has no DF column; its p-values use a t",
                                         "distribution with N - p df (recorded here as DF).")))
    res$se_noadjust_note <- paste(
      "summary.gls() has no adjustSigma argument (summary(fit, adjustSigma = FALSE) silently",
      "ignores it), so se_noadjust == se_summary. For method = 'ML' gls() itself builds",
      "vcov = sigma_ML^2 * N/(N-p) * (X' V^-1 X)^-1, i.e. the sqrt(N/(N-p)) inflation is",
      "already inside vcov(), summary() and se_vcov; it is NOT applied to the printed sigma.")
    ## se without that built-in inflation, for comparison
    Xm <- model.matrix(fit, data = d)
    raw <- fit$sigma * sqrt(diag(solve(crossprod(Xm))))
    res$se_sigma_times_sqrt_diag_XtX_inv <- named(raw)
    if (reml) {
      stopifnot(near(se_vcov, raw, 1e-8))
    } else {
      stopifnot(near(se_vcov, raw * k, 1e-8))
    }
    stopifnot(near(unlist(res$se_summary), se_vcov), near(unlist(res$se_noadjust), se_vcov))
    ## sigma: REML -> sqrt(RSS/(N-p)), ML -> sqrt(RSS/N)  (no weights/correlation)
    rss <- sum(resid(fit)^2)
    res$rss <- rss
    res$sigma_rule <- if (reml) "sigma = sqrt(RSS/(N - p))" else "sigma = sqrt(RSS/N)  (ML, not inflated)"
    stopifnot(near(res$sigma, sqrt(rss / (N - reml * p)), 1e-8))
  } else {
    res$fixef <- named(fixef(fit))
    res$tTable <- table_json(tt, list(Value = "Value", Std.Error = "Std.Error", DF = "DF",
                                      t.value = "t-value", p.value = "p-value"))
    res$tTable_noadjust <- table_json(s_noadj$tTable,
      list(Value = "Value", Std.Error = "Std.Error", DF = "DF",
           t.value = "t-value", p.value = "p-value"))
    res$varcorr <- varcorr_nlme(fit)
    res$se_noadjust_note <- paste(
      "summary.lme(fit, adjustSigma = FALSE). Default adjustSigma = TRUE multiplies the",
      "ML standard errors (only for method = 'ML') by sqrt(N/(N-p)); vcov() is never adjusted.")
    if (reml) {
      stopifnot(near(unlist(res$se_summary), se_vcov))
    } else {
      stopifnot(near(unlist(res$se_summary), se_vcov * k))
    }
    stopifnot(near(unlist(res$se_noadjust), se_vcov))
    ## printed residual SD is fit$sigma for both adjustSigma settings
    stopifnot(grepl(format(fit$sigma, digits = 7), res$summary_text, fixed = TRUE))
    if (inherits(fit, "nlme")) res$numIter <- fit$numIter
  }
  ## nlme's BIC convention
  stopifnot(near(res$BIC, -2 * res$logLik + df * log(N - reml * p)),
            near(res$AIC, -2 * res$logLik + 2 * df),
            attr(ll, "nobs") == N - reml * p)
  res
}

## ---------------------------------------------------------- lme4 side ----
lmer_record <- function(case_id, call_string, fit, d, data_csv, lme_fit) {
  ll <- logLik(fit)
  df <- attr(ll, "df")
  reml <- isREML(fit)
  N <- nobs(fit)
  p <- length(fixef(fit))
  s <- summary(fit)
  ct <- coef(s)
  se_vcov <- sqrt(diag(as.matrix(vcov(fit))))
  vc <- as.data.frame(VarCorr(fit))
  res <- list(
    case_id = case_id,
    call = call_string,
    engine = "lme4::lmer",
    method = if (reml) "REML" else "ML",
    data = list(csv = data_csv, nrow = nrow(d)),
    factors = factor_info(d),
    logLik = as.numeric(ll),
    AIC = AIC(fit),
    BIC = BIC(fit),
    BIC_lme4_style = -2 * as.numeric(ll) + df * log(N),
    BIC_nlme_style = -2 * as.numeric(ll) + df * log(N - reml * p),
    BIC_rule = "BIC = -2 logLik + df * log(N)  (REML and ML alike)",
    N = N,
    p = p,
    df = df,
    logLik_attr_nobs = attr(ll, "nobs"),
    sigma = sigma(fit),
    sigma_printed_source = "'Residual' Std.Dev. under 'Random effects' = sigma(fit)",
    fixef = named(fixef(fit)),
    se_summary = named(ct[, "Std. Error"]),
    se_noadjust = named(ct[, "Std. Error"]),
    se_noadjust_note = "lme4 has no sigma adjustment: summary SEs are sqrt(diag(vcov)) for ML and REML.",
    se_vcov = named(se_vcov),
    sqrt_N_over_N_minus_p = sqrt(N / (N - p)),
    ratio_se_summary_over_se_vcov = named(ct[, "Std. Error"] / se_vcov),
    tTable = table_json(ct, list(Estimate = "Estimate", Std.Error = "Std. Error",
                                 t.value = "t value")),
    tTable_note = "lme4's coefficient table has no DF and no p-value columns.",
    varcorr = lapply(seq_len(nrow(vc)), function(i)
      list(group = vc$grp[i], name = if (is.na(vc$var1[i])) "" else vc$var1[i],
           StdDev = vc$sdcor[i])),
    REMLcrit_or_deviance = if (reml) REMLcrit(fit) else deviance(fit),
    summary_text = summary_text(s),
    same_model_nlme_lme = list(
      call = paste(deparse(getCall(lme_fit)), collapse = " "),
      logLik = as.numeric(logLik(lme_fit)),
      logLik_lmer_minus_lme = as.numeric(ll) - as.numeric(logLik(lme_fit)),
      fixef = named(fixef(lme_fit)),
      sigma = lme_fit$sigma,
      se_vcov = named(sqrt(diag(vcov(lme_fit)))))
  )
  stopifnot(near(res$BIC, res$BIC_lme4_style), attr(ll, "nobs") == N,
            near(unlist(res$se_summary), se_vcov))
  res
}

## -------------------------------------------------------------- data ----
write_data(Orthodont, "data_Orthodont.csv")
write_data(Orange, "data_Orange.csv")

## ------------------------------------------------ 1. gls on Orthodont ----
for (meth in c("REML", "ML")) {
  cs <- sprintf('gls(distance ~ age * Sex, data = Orthodont, method = "%s")', meth)
  fit <- fit_text(cs)
  res <- nlme_family_record(sprintf("gls_Orthodont_%s", tolower(meth)), cs, fit,
                            Orthodont, "data_Orthodont.csv")
  ## the same model by lm: gls ML/REML SEs equal lm's, i.e. built from s^2 = RSS/(N-p)
  lmfit <- lm(distance ~ age * Sex, data = Orthodont)
  res$lm_comparison <- list(
    call = "lm(distance ~ age * Sex, data = Orthodont)",
    se = named(coef(summary(lmfit))[, "Std. Error"]),
    sigma_lm = summary(lmfit)$sigma,
    logLik_lm = as.numeric(logLik(lmfit, REML = (meth == "REML"))))
  stopifnot(near(unlist(res$se_vcov), coef(summary(lmfit))[, "Std. Error"], 1e-8))
  write_ref(res, sprintf("gls_Orthodont_%s.json", tolower(meth)))
}

## ------------------------------------------------ 2. lme on Orthodont ----
lme_fits <- list()
for (meth in c("REML", "ML")) {
  cs <- sprintf('lme(distance ~ age + Sex, random = ~ 1 | Subject, data = Orthodont, method = "%s")', meth)
  fit <- fit_text(cs)
  lme_fits[[meth]] <- fit
  res <- nlme_family_record(sprintf("lme_Orthodont_%s", tolower(meth)), cs, fit,
                            Orthodont, "data_Orthodont.csv")
  write_ref(res, sprintf("lme_Orthodont_%s.json", tolower(meth)))
}

## ------------------------------- REML vs ML relative covariance ----
## nlme() (nonlinear) REML quirk: its PNLS step (C: nlme_increment, RML = 0)
## re-estimates the relative RE covariance by ML and overwrites the LME
## step's REML value, so the REML fit has the ML fit's Psi/sigma^2 and fixef,
## sigma_REML = sigma_ML*sqrt(N/(N-p)). lme() has no such step.
reml_vs_ml <- function(ml, reml) {
  rel <- function(f) unlist(lapply(f$modelStruct$reStruct,
                                   function(p) sqrt(diag(as.matrix(p)))))
  N <- ml$dims$N; p <- length(fixef(ml))
  list(relative_re_sd_ML = named(rel(ml)), relative_re_sd_REML = named(rel(reml)),
       max_rel_diff_relative_re_sd = max(abs(rel(reml) / rel(ml) - 1)),
       max_rel_diff_fixef = max(abs(fixef(reml) / fixef(ml) - 1)),
       sigma_ratio_REML_over_ML = reml$sigma / ml$sigma,
       sqrt_N_over_N_minus_p = sqrt(N / (N - p)))
}
append_json <- function(file, field, value) {
  js <- jsonlite::read_json(file.path(out_dir, file)); js$versions <- NULL
  js[[field]] <- value
  write_ref(js, file)
}
append_json("lme_Orthodont_reml.json", "reml_vs_ml",
            c(reml_vs_ml(lme_fits[["ML"]], lme_fits[["REML"]]),
              note = "lme(): a genuine REML optimum; relative RE SD differs from ML's."))

## ----------------------------------------------- 3. nlme on Orange ----
## No start given: nlme fits nlsList(SSlogis) per Tree and starts from the
## medians (nlme.nlsList).
nlme_fits <- list()
for (meth in c("ML", "REML")) {
  cs <- sprintf(paste('nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange,',
                      'fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1 | Tree, method = "%s")'),
                meth)
  fit <- fit_text(cs)
  nlme_fits[[meth]] <- fit
  res <- nlme_family_record(sprintf("nlme_Orange_%s", tolower(meth)), cs, fit,
                            Orange, "data_Orange.csv")
  ls <- nlsList(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange)
  res$start <- list(source = "nlsList medians (start argument not given)",
                    fixed = named(sapply(na.omit(coef(ls)), median)))
  write_ref(res, sprintf("nlme_Orange_%s.json", tolower(meth)))
}

rv <- reml_vs_ml(nlme_fits[["ML"]], nlme_fits[["REML"]])
stopifnot(rv$max_rel_diff_relative_re_sd < 1e-6,
          abs(rv$sigma_ratio_REML_over_ML / rv$sqrt_N_over_N_minus_p - 1) < 1e-6)
append_json("nlme_Orange_reml.json", "reml_vs_ml",
            c(rv, note = paste("nlme(): REML fit has the ML fit's relative RE covariance and",
                               "fixef; only sigma and the reported logLik differ.")))

## --------------------------------------------- 4. lmer on Orthodont ----
ortho <- as.data.frame(Orthodont)
for (reml in c(TRUE, FALSE)) {
  meth <- if (reml) "REML" else "ML"
  cs <- sprintf("lmer(distance ~ age + Sex + (1 | Subject), data = ortho, REML = %s)", reml)
  fit <- fit_text(cs)
  res <- lmer_record(sprintf("lmer_Orthodont_%s", tolower(meth)), cs, fit,
                     ortho, "data_Orthodont.csv", lme_fits[[meth]])
  res$data$note <- "ortho <- as.data.frame(Orthodont) (drops the groupedData class only)"
  ## lme and lmer maximise the same (RE)ML criterion for this model
  stopifnot(abs(res$same_model_nlme_lme$logLik_lmer_minus_lme) < 1e-6)
  write_ref(res, sprintf("lmer_Orthodont_%s.json", tolower(meth)))
}

cat("done\n")
