#!/usr/bin/env Rscript
## Reference values ("trust" cases) for bayesmix, computed with R as the oracle.
##
## Run from the repository root (/work/main):
##     Rscript tests/refs/trust/make_trust_refs.R
## Reads the bundled CSVs from /work/shared/data (override with env BAYESMIX_DATA)
## and writes one JSON per case next to this script (plus the simulated CSV
## for the early-stop case).  Tests only read the JSON / CSV files.

suppressPackageStartupMessages({
  library(lme4)
  library(nlme)
  library(jsonlite)
})

data_dir <- Sys.getenv("BAYESMIX_DATA", "/work/shared/data")
out_dir <- "tests/refs/trust"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

versions <- list(
  r_version = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  nlme = as.character(packageVersion("nlme")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite")),
  generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z")
)

write_case <- function(x, file) {
  x$versions <- versions
  jsonlite::write_json(x, file.path(out_dir, file),
                       digits = NA, auto_unbox = TRUE, pretty = TRUE)
  cat("wrote", file, "\n")
}

## Evaluate an expression, collecting warnings (and messages) instead of
## printing them.
capture <- function(expr) {
  warns <- character(0)
  msgs <- character(0)
  val <- withCallingHandlers(expr,
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      msgs <<- c(msgs, trimws(conditionMessage(m)))
      invokeRestart("muffleMessage")
    })
  tally <- function(x) {
    if (!length(x)) return(I(character(0)))
    tab <- table(factor(x, levels = unique(x)))
    I(ifelse(tab > 1, sprintf("%s [x%d]", names(tab), as.integer(tab)), names(tab)))
  }
  list(value = val, warnings = tally(warns), messages = tally(msgs))
}

named <- function(v) as.list(v)  # named vector -> JSON object
empty_obj <- function() structure(list(), names = character(0))  # -> {}

## VarCorr of a merMod -> list(group -> list(sd = {...}, corr = {...}))
varcorr_lmer <- function(fit) {
  vc <- VarCorr(fit)
  out <- list()
  for (g in names(vc)) {
    m <- vc[[g]]
    sds <- attr(m, "stddev")
    cr <- attr(m, "correlation")
    corr <- empty_obj()
    nm <- names(sds)
    if (length(nm) > 1) {
      for (i in seq_along(nm)) for (j in seq_along(nm)) if (i < j)
        corr[[paste(nm[i], nm[j], sep = ":")]] <- cr[i, j]
    }
    out[[g]] <- list(sd = named(sds), corr = corr)
  }
  out[["Residual"]] <- list(sd = list(`(Intercept)` = sigma(fit)), corr = empty_obj())
  out
}

## Common summary of an lmer fit.
lmer_summary <- function(fit, call_string, cap) {
  ll <- logLik(fit)
  reml <- isREML(fit)
  oi <- fit@optinfo
  res <- list(
    r_call = call_string,
    engine = "lme4::lmer",
    method = if (reml) "REML" else "ML",
    logLik = as.numeric(ll),
    df = attr(ll, "df"),
    nobs = nobs(fit),
    AIC = AIC(fit),
    BIC = BIC(fit),
    REMLcrit = if (reml) REMLcrit(fit) else NULL,
    deviance = if (!reml) deviance(fit) else NULL,
    deviance_definition = if (reml)
      "REMLcrit = -2 * REML log-likelihood" else
      "deviance = -2 * ML log-likelihood (lme4 deviance())",
    fixef = named(fixef(fit)),
    fixef_se = named(sqrt(diag(as.matrix(vcov(fit))))),
    theta = named(getME(fit, "theta")),
    sigma = sigma(fit),
    varcorr = varcorr_lmer(fit),
    singular = isSingular(fit),
    optimizer = oi$optimizer,
    optimizer_feval = oi$feval,
    optimizer_message = oi$message,
    convergence_messages = I(as.character(unlist(oi$conv$lme4$messages))),
    warnings = cap$warnings,
    messages = cap$messages,
    fitted = unname(fitted(fit))
  )
  res[!vapply(res, is.null, logical(1))]
}

## Cross-check of the optimum with a second optimizer (bobyqa).
bobyqa_check <- function(fit) {
  f2 <- suppressWarnings(update(fit, control = lmerControl(optimizer = "bobyqa")))
  list(optimizer = "bobyqa",
       logLik = as.numeric(logLik(f2)),
       fixef = named(fixef(f2)),
       theta = named(getME(f2, "theta")),
       sigma = sigma(f2),
       logLik_minus_default = as.numeric(logLik(f2)) - as.numeric(logLik(fit)))
}

predict_first5 <- function(fit, d) {
  nd <- d[1:5, , drop = FALSE]
  list(
    rows = "first 5 rows of the data (1-based rows 1..5)",
    newdata_re_form_NA = unname(predict(fit, newdata = nd, re.form = NA)),
    newdata_with_re = unname(predict(fit, newdata = nd)),
    nonewdata_re_form_NA = unname(predict(fit, re.form = NA)[1:5]),
    nonewdata_with_re = unname(predict(fit)[1:5])
  )
}

## ---------------------------------------------------------------- data ----
sleepstudy <- read.csv(file.path(data_dir, "sleepstudy.csv"))
sleepstudy$Subject <- factor(sleepstudy$Subject)
stopifnot(nrow(sleepstudy) == 180, nlevels(sleepstudy$Subject) == 18)
## prior weights used by cases 2-4
weights_rule <- "w = 1 + (Days %% 3)   (R modulo; Days is the integer column Days)"
sleepstudy$w <- 1 + (sleepstudy$Days %% 3)

## ------------------------------------------------------ case 1: offset ----
for (reml in c(TRUE, FALSE)) {
  call_s <- sprintf(
    "lmer(Reaction ~ Days + offset(10*Days) + (Days|Subject), data = sleepstudy, REML = %s)",
    reml)
  cap <- capture(lmer(Reaction ~ Days + offset(10 * Days) + (Days | Subject),
                      data = sleepstudy, REML = reml))
  fit <- cap$value
  res <- lmer_summary(fit, call_s, cap)
  res$case_id <- sprintf("offset_sleepstudy_%s", if (reml) "reml" else "ml")
  res$data_file <- "shared/data/sleepstudy.csv"
  res$offset_rule <- "offset = 10*Days (formula offset() term)"
  res$notes <- paste(
    "Fitted values and predictions include the offset.",
    "The Days coefficient equals the no-offset fit's Days coefficient minus 10.")
  ## same model without offset, for the 'minus 10' identity
  nooff <- lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = reml)
  res$no_offset_fit <- list(logLik = as.numeric(logLik(nooff)),
                            fixef = named(fixef(nooff)))
  res$predict_first5 <- predict_first5(fit, sleepstudy)
  res$bobyqa_check <- bobyqa_check(fit)
  write_case(res, sprintf("%s.json", res$case_id))
}

## ----------------------------------------------------- case 2: weights ----
for (reml in c(TRUE, FALSE)) {
  call_s <- sprintf(
    "lmer(Reaction ~ Days + (Days|Subject), data = sleepstudy, weights = w, REML = %s)",
    reml)
  cap <- capture(lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy,
                      weights = w, REML = reml))
  fit <- cap$value
  res <- lmer_summary(fit, call_s, cap)
  res$case_id <- sprintf("weights_sleepstudy_%s", if (reml) "reml" else "ml")
  res$data_file <- "shared/data/sleepstudy.csv"
  res$weights_rule <- weights_rule
  res$weights <- sleepstudy$w
  res$notes <- "Prior weights: residual variance of row i is sigma^2 / w_i."
  res$predict_first5 <- predict_first5(fit, sleepstudy)
  res$bobyqa_check <- bobyqa_check(fit)
  write_case(res, sprintf("%s.json", res$case_id))
}

## ------------------------------------- case 3: offset= arg + weights, ML ----
{
  call_s <- paste("lmer(Reaction ~ Days + (Days|Subject), data = sleepstudy,",
                  "offset = 5*Days, weights = w, REML = FALSE)")
  cap <- capture(lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy,
                      offset = 5 * Days, weights = w, REML = FALSE))
  fit <- cap$value
  res <- lmer_summary(fit, call_s, cap)
  res$case_id <- "offset_weights_sleepstudy_ml"
  res$data_file <- "shared/data/sleepstudy.csv"
  res$weights_rule <- weights_rule
  res$offset_rule <- "offset = 5*Days (lmer offset= argument, not a formula term)"
  res$weights <- sleepstudy$w
  res$predict_first5 <- predict_first5(fit, sleepstudy)
  p <- res$predict_first5
  res$predict_first5$note <- paste(
    "lme4 1.1-31 predict(newdata=) only re-evaluates offset() terms in the formula;",
    "an offset given via the offset= ARGUMENT is silently dropped for newdata.",
    "So newdata_* values EXCLUDE the 5*Days offset while nonewdata_* (and fitted)",
    "include it. Max |difference - 5*Days| over the 5 rows:",
    format(max(abs((p$nonewdata_with_re - p$newdata_with_re) - 5 * sleepstudy$Days[1:5]))))
  res$predict_first5$with_offset_re_form_NA <- p$newdata_re_form_NA + 5 * sleepstudy$Days[1:5]
  res$predict_first5$with_offset_with_re <- p$newdata_with_re + 5 * sleepstudy$Days[1:5]
  ## formula-offset form of the same model (must agree)
  f2 <- lmer(Reaction ~ Days + offset(5 * Days) + (Days | Subject), data = sleepstudy,
             weights = w, REML = FALSE)
  res$formula_offset_equivalent <- list(
    r_call = "lmer(Reaction ~ Days + offset(5*Days) + (Days|Subject), weights = w, REML = FALSE)",
    logLik = as.numeric(logLik(f2)), fixef = named(fixef(f2)))
  res$bobyqa_check <- bobyqa_check(fit)
  write_case(res, "offset_weights_sleepstudy_ml.json")
}

## ------------------------------------------------- case 4: gls weights ----
for (meth in c("REML", "ML")) {
  call_s <- sprintf(
    "gls(Reaction ~ Days, data = sleepstudy, weights = varFixed(~ 1/w), method = \"%s\")",
    meth)
  cap <- capture(gls(Reaction ~ Days, data = sleepstudy,
                     weights = varFixed(~ 1/w), method = meth))
  fit <- cap$value
  ll <- logLik(fit)
  lmfit <- lm(Reaction ~ Days, data = sleepstudy, weights = w)
  ll_lm <- logLik(lmfit, REML = (meth == "REML"))
  res <- list(
    case_id = sprintf("gls_weights_sleepstudy_%s", tolower(meth)),
    r_call = call_s,
    engine = "nlme::gls",
    method = meth,
    data_file = "shared/data/sleepstudy.csv",
    weights_rule = weights_rule,
    variance_model = "Var(e_i) = sigma^2 / w_i  (varFixed(~ 1/w))",
    weights = sleepstudy$w,
    logLik = as.numeric(ll),
    df = attr(ll, "df"),
    nobs = nobs(fit),
    AIC = AIC(fit),
    BIC = BIC(fit),
    minus2logLik = -2 * as.numeric(ll),
    fixef = named(coef(fit)),
    fixef_se = named(sqrt(diag(vcov(fit)))),
    sigma = fit$sigma,
    varcorr = list(Residual = list(sd = list(`(Intercept)` = fit$sigma), corr = empty_obj())),
    warnings = cap$warnings,
    fitted = unname(as.numeric(fitted(fit))),
    lm_comparison = list(
      r_call = sprintf("logLik(lm(Reaction ~ Days, data = sleepstudy, weights = w), REML = %s)",
                       meth == "REML"),
      logLik = as.numeric(ll_lm),
      df = attr(ll_lm, "df"),
      fixef = named(coef(lmfit)),
      sigma_lm = summary(lmfit)$sigma,
      logLik_diff_gls_minus_lm = as.numeric(ll) - as.numeric(ll_lm)
    ),
    notes = paste(
      "gls sigma is the ML estimate for method='ML' and the REML estimate for 'REML';",
      "lm's summary sigma is always the REML-type (n-p) estimate.")
  )
  stopifnot(abs(res$lm_comparison$logLik_diff_gls_minus_lm) < 1e-6)
  write_case(res, sprintf("%s.json", res$case_id))
}

## ------------------------------------- case 5: large-offset predictors ----
{
  d <- sleepstudy
  d$x1 <- d$Days + 1e6
  d$x2 <- 1.7e9 + 1e3 * d$Days
  entries <- list()
  specs <- list(
    x1 = list(f = Reaction ~ x1 + (1 | Subject), rule = "x1 = Days + 1e6"),
    x2 = list(f = Reaction ~ x2 + (1 | Subject), rule = "x2 = 1.7e9 + 1e3*Days"))
  ref <- lmer(Reaction ~ Days + (1 | Subject), data = d, REML = FALSE)
  b <- fixef(ref)
  for (nm in names(specs)) {
    s <- specs[[nm]]
    cap <- capture(lmer(s$f, data = d, REML = FALSE))
    fit <- cap$value
    ll <- logLik(fit)
    ## exact values implied by the reparametrisation of the Days fit
    if (nm == "x1") {
      exact <- c(b[1] - 1e6 * b[2], b[2])
    } else {
      exact <- c(b[1] - 1.7e9 * b[2] / 1e3, b[2] / 1e3)
    }
    names(exact) <- c("(Intercept)", nm)
    entries[[nm]] <- list(
      r_call = sprintf("lmer(Reaction ~ %s + (1|Subject), data = sleepstudy, REML = FALSE)", nm),
      predictor_rule = s$rule,
      logLik = as.numeric(ll),
      df = attr(ll, "df"),
      deviance = deviance(fit),
      fixef = named(fixef(fit)),
      fixef_se = named(sqrt(diag(as.matrix(vcov(fit))))),
      theta = named(getME(fit, "theta")),
      sigma = sigma(fit),
      warnings = cap$warnings,
      messages = cap$messages,
      convergence_messages = I(as.character(unlist(fit@optinfo$conv$lme4$messages))),
      exact_from_reparametrised_Days_fit = named(exact),
      logLik_minus_Days_fit = as.numeric(ll) - as.numeric(logLik(ref))
    )
  }
  res <- list(
    case_id = "large_offset_predictor_ml",
    engine = "lme4::lmer",
    method = "ML",
    data_file = "shared/data/sleepstudy.csv",
    notes = paste(
      "Both models are exact reparametrisations of lmer(Reaction ~ Days + (1|Subject), REML=FALSE)",
      "(entry 'Days_reference'), so logLik must be identical in exact arithmetic;",
      "'exact_from_reparametrised_Days_fit' gives the fixed effects implied by that fit."),
    Days_reference = list(
      r_call = "lmer(Reaction ~ Days + (1|Subject), data = sleepstudy, REML = FALSE)",
      logLik = as.numeric(logLik(ref)),
      fixef = named(fixef(ref)),
      theta = named(getME(ref, "theta")),
      sigma = sigma(ref)),
    fits = entries
  )
  write_case(res, "large_offset_predictor_ml.json")
}

## ------------------------------------------- case 6: nlme Theoph weights ----
{
  Theoph <- read.csv(file.path(data_dir, "Theoph.csv"))
  Theoph$Subject <- factor(Theoph$Subject, levels = as.character(1:12))
  stopifnot(nrow(Theoph) == 132)
  idx <- seq_len(nrow(Theoph))
  st <- c(lKe = -2.4, lKa = 0.45, lCl = -3.2)
  fit_direct <- function(d) capture(nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = d,
                      fixed = lKe + lKa + lCl ~ 1,
                      random = pdDiag(lKa + lCl ~ 1), groups = ~Subject,
                      weights = varFixed(~ 1/w), method = "ML", start = st))
  ## The first rule suggested, w = 1 + (row_index %% 2), does not converge:
  ## nlme stops with "maximum number of iterations (maxIter = 50) reached
  ## without convergence" (also with maxIter = 200 and also for the
  ## transformed-response formulation below), so it is recorded as a failure
  ## and the mirrored rule w = 2 - (row_index %% 2) is used instead.
  Theoph$w <- 1 + (idx %% 2)
  first_try <- tryCatch({fit_direct(Theoph); "converged"},
                        error = function(e) conditionMessage(e))
  th_rule <- "w = 2 - (row_index %% 2), row_index = 1..132 in CSV order (odd rows w=1, even rows w=2)"
  Theoph$w <- 2 - (idx %% 2)
  call_s <- paste(
    "nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph,",
    "fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1), groups = ~Subject,",
    "weights = varFixed(~ 1/w), method = \"ML\", start = c(lKe = -2.4, lKa = 0.45, lCl = -3.2))")
  cap <- fit_direct(Theoph)
  fit <- cap$value
  ll <- logLik(fit)
  ## full-precision SDs (VarCorr() for nlme returns a rounded character matrix)
  sd_of <- function(f) sqrt(diag(as.matrix(f$modelStruct$reStruct$Subject))) * f$sigma
  re_sd <- sd_of(fit)
  tt <- summary(fit)$tTable
  ## Independent cross-check that avoids varFixed entirely: Var(e_i) = sigma^2/w_i
  ## is the same as an unweighted fit of sqrt(w)*conc on sqrt(w)*f(.)
  ## (closed-form one-compartment model, no analytic gradient), whose
  ## log-likelihood is lower by 0.5*sum(log(w)) (Jacobian of the transform).
  Theoph$sw <- sqrt(Theoph$w)
  Theoph$yt <- Theoph$sw * Theoph$conc
  fitT <- nlme(yt ~ sw * Dose * exp(lKe + lKa - lCl) *
                 (exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time)) / (exp(lKa) - exp(lKe)),
               data = Theoph, fixed = lKe + lKa + lCl ~ 1,
               random = pdDiag(lKa + lCl ~ 1), groups = ~Subject, method = "ML", start = st)
  llT <- as.numeric(logLik(fitT)) + 0.5 * sum(log(Theoph$w))
  ## unweighted version of the same model, for orientation
  fit0 <- nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph,
               fixed = lKe + lKa + lCl ~ 1,
               random = pdDiag(lKa + lCl ~ 1), groups = ~Subject, method = "ML", start = st)
  res <- list(
    case_id = "nlme_theoph_weights_ml",
    r_call = call_s,
    engine = "nlme::nlme",
    method = "ML",
    data_file = "shared/data/Theoph.csv",
    data_notes = "Subject read from CSV as factor with levels '1'..'12' (CSV row order kept).",
    weights_rule = th_rule,
    weights_rule_first_tried = "w = 1 + (row_index %% 2)",
    weights_rule_first_tried_result = first_try,
    variance_model = "Var(e_i) = sigma^2 / w_i  (varFixed(~ 1/w))",
    weights = Theoph$w,
    converged = TRUE,
    numIter = fit$numIter,
    logLik = as.numeric(ll),
    df = attr(ll, "df"),
    nobs = nobs(fit),
    AIC = AIC(fit),
    BIC = BIC(fit),
    logLik_definition = "nlme's Lindstrom-Bates (linearised) log-likelihood at convergence, incl. +0.5*sum(log w)",
    fixef = named(fixef(fit)),
    fixef_se = named(tt[, "Std.Error"]),
    random_effect_sd = named(re_sd),
    sigma = fit$sigma,
    varcorr = list(Subject = list(sd = named(re_sd), corr = empty_obj()),
                   Residual = list(sd = list(`(Intercept)` = fit$sigma), corr = empty_obj())),
    warnings = cap$warnings,
    warnings_note = paste(
      "nlme 3.1-162 emits 'longer object length is not a multiple of shorter object length'",
      "from recalc.varFunc (conLin$Xy * varWeights) because nlme.formula QR-decomposes conLin",
      "when the varFunc has no free parameters. The estimates nevertheless agree with the",
      "varFixed-free transformed-response fit below to ~1e-6 (checked for several weight rules)."),
    fitted = unname(as.numeric(fitted(fit))),
    transformed_response_check = list(
      r_call = paste("nlme(sqrt(w)*conc ~ sqrt(w)*Dose*exp(lKe+lKa-lCl)*(exp(-exp(lKe)*Time)-exp(-exp(lKa)*Time))/(exp(lKa)-exp(lKe)),",
                     "fixed = lKe+lKa+lCl ~ 1, random = pdDiag(lKa+lCl ~ 1), groups = ~Subject, method = 'ML', start = same)"),
      logLik_plus_half_sum_log_w = llT,
      fixef = named(fixef(fitT)),
      random_effect_sd = named(sd_of(fitT)),
      sigma = fitT$sigma,
      logLik_diff_direct_minus_transformed = as.numeric(ll) - llT),
    unweighted_same_model = list(
      logLik = as.numeric(logLik(fit0)),
      fixef = named(fixef(fit0)),
      random_effect_sd = named(sd_of(fit0)),
      sigma = fit0$sigma)
  )
  stopifnot(abs(res$transformed_response_check$logLik_diff_direct_minus_transformed) < 1e-4)
  write_case(res, "nlme_theoph_weights_ml.json")
}

## ----------------------------------------- case 7: early-stop synthetic ----
{
  set.seed(20261204)
  n <- 20000
  n1 <- 500
  n2 <- 100
  g1 <- sample(rep(seq_len(n1), length.out = n))   # 40 rows per g1 level
  g2 <- sample(rep(seq_len(n2), length.out = n))   # 200 rows per g2 level
  x <- rnorm(n)
  S <- matrix(c(1, 0.3 * 1 * 0.5, 0.3 * 1 * 0.5, 0.25), 2, 2)
  z <- matrix(rnorm(2 * n1), n1, 2)
  b1 <- z %*% chol(S)                               # rows ~ N(0, S)
  b2 <- rnorm(n2, sd = 0.7)
  e <- rnorm(n, sd = 2)
  y <- 1 + 0.5 * x + b1[g1, 1] + b1[g1, 2] * x + b2[g2] + e
  sim <- data.frame(y = signif(y, 6), x = signif(x, 6),
                    g1 = sprintf("a%03d", g1), g2 = sprintf("b%03d", g2))
  csv <- file.path(out_dir, "early_stop_synthetic.csv")
  write.csv(sim, csv, row.names = FALSE, quote = FALSE)
  ## fit on exactly what was written
  dat <- read.csv(csv)
  dat$g1 <- factor(dat$g1)
  dat$g2 <- factor(dat$g2)
  stopifnot(nrow(dat) == n, nlevels(dat$g1) == n1, nlevels(dat$g2) == n2)
  fits <- list()
  for (opt in c("bobyqa", "nloptwrap")) {
    cap <- capture(lmer(y ~ 1 + x + (1 + x | g1) + (1 | g2), data = dat, REML = FALSE,
                        control = lmerControl(optimizer = opt)))
    fit <- cap$value
    ll <- logLik(fit)
    fits[[opt]] <- list(
      r_call = sprintf(paste0("lmer(y ~ 1 + x + (1 + x | g1) + (1 | g2), data = dat, REML = FALSE, ",
                              "control = lmerControl(optimizer = \"%s\"))"), opt),
      optimizer = opt,
      logLik = as.numeric(ll),
      df = attr(ll, "df"),
      deviance = deviance(fit),
      AIC = AIC(fit),
      BIC = BIC(fit),
      fixef = named(fixef(fit)),
      fixef_se = named(sqrt(diag(as.matrix(vcov(fit))))),
      theta = named(getME(fit, "theta")),
      sigma = sigma(fit),
      varcorr = varcorr_lmer(fit),
      optimizer_feval = fit@optinfo$feval,
      optimizer_message = fit@optinfo$message,
      convergence_messages = I(as.character(unlist(fit@optinfo$conv$lme4$messages))),
      warnings = cap$warnings,
      messages = cap$messages
    )
  }
  res <- list(
    case_id = "early_stop_synthetic",
    engine = "lme4::lmer",
    method = "ML",
    data_file = "tests/refs/trust/early_stop_synthetic.csv",
    simulation = list(
      seed = 20261204,
      n = n, g1_levels = n1, g2_levels = n2,
      truth = list(beta = list(`(Intercept)` = 1, x = 0.5),
                   sd_b1 = 1, sd_b1x = 0.5, corr_b1_b1x = 0.3, sd_b2 = 0.7, sigma = 2),
      rule = paste(
        "g1 = sample(rep(1:500, length.out=n)), g2 = sample(rep(1:100, length.out=n)), x = rnorm(n),",
        "b1 = matrix(rnorm(2*500),500,2) %*% chol(S), b2 = rnorm(100, sd=0.7), e = rnorm(n, sd=2);",
        "y, x rounded with signif(, 6) then written; fit uses the CSV as read back.",
        "g1/g2 written as labels 'a001'..'a500', 'b001'..'b100'.")
    ),
    fits = fits,
    reproducibility_note = paste(
      "Re-running this script on the same machine gives run-to-run differences for this case",
      "only (same CSV, md5-identical): logLik changes by ~1e-10, fixef by ~5e-10, theta by ~5e-8,",
      "sigma by ~4e-9 (observed with bobyqa; nloptwrap ~1e-9). Use tolerances well above these."),
    logLik_bobyqa_minus_nloptwrap = fits$bobyqa$logLik - fits$nloptwrap$logLik
  )
  write_case(res, "early_stop_synthetic.json")
}

cat("done\n")
