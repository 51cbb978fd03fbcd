#!/usr/bin/env Rscript
## R reference values for bayesmix: nls() fits of every self-starting model
## in R's stats package, each on the data set its own help page uses.
##
## Run from the repository root (/work/main):
##     Rscript tests/refs/rfidelity/nonlinear/make_nls_refs.R
## Writes, next to this script:
##   nls_<model>.json    one per fit (see README.md for the fields)
##   data_<name>.csv     the exact rows each fit used (write.csv, no row names)
## The data sets are R's built-in ones (package datasets); the CSVs are only
## copies for the Python side, and the script checks that they read back
## identical to what R fitted.

suppressPackageStartupMessages({
  library(stats)
  library(jsonlite)
})

out_dir <- "tests/refs/rfidelity/nonlinear"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

versions <- list(
  r_version = R.version.string,
  stats = as.character(packageVersion("stats")),
  jsonlite = as.character(packageVersion("jsonlite")),
  generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z")
)

## ------------------------------------------------------------ helpers ----

## Full-precision JSON writer (digits = NA: shortest repr. that round-trips).
write_ref <- function(x, file) {
  x$versions <- versions
  jsonlite::write_json(x, file.path(out_dir, file), digits = NA,
                       auto_unbox = TRUE, pretty = TRUE, na = "null")
  cat("wrote", file, "\n")
}

named <- function(v) as.list(v)          # named vector -> JSON object

## Level order of every factor column: {col: {levels: [...], ordered: bool}}.
## Levels are those of the data frame passed to nls(); a row subset keeps
## ALL levels of the parent data set (R does not drop unused levels).
factor_info <- function(d) {
  out <- list()
  for (nm in names(d)) if (is.factor(d[[nm]]))
    out[[nm]] <- list(levels = I(levels(d[[nm]])), ordered = is.ordered(d[[nm]]))
  if (!length(out)) structure(list(), names = character(0)) else out
}

## Write a data frame as CSV and check that it reads back with identical
## numeric values and factor labels (so the Python side sees what R fitted).
write_data <- function(d, file) {
  d <- as.data.frame(d)          # drop groupedData class, keep columns
  write.csv(d, file.path(out_dir, file), row.names = FALSE)
  back <- read.csv(file.path(out_dir, file), stringsAsFactors = FALSE)
  stopifnot(identical(names(back), names(d)), nrow(back) == nrow(d))
  for (nm in names(d)) {
    if (is.numeric(d[[nm]])) {
      stopifnot(identical(as.numeric(back[[nm]]), as.numeric(d[[nm]])))
    } else {
      stopifnot(identical(as.character(back[[nm]]), as.character(d[[nm]])))
    }
  }
  invisible(file)
}

## Collect warnings instead of printing them.
capture <- function(expr) {
  warns <- character(0)
  val <- withCallingHandlers(expr, warning = function(w) {
    warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning")
  })
  list(value = val, warnings = I(unique(warns)))
}

## Everything recorded for one nls fit.
nls_record <- function(name, call_string, fit, init, data_info, d_fitted,
                       help_page, env, notes = NULL, warnings = I(character(0))) {
  s <- summary(fit)
  ll <- logLik(fit)
  ct <- coef(s)                          # Estimate, Std. Error, t value, Pr(>|t|)
  ci <- fit$convInfo
  res <- list(
    name = name,
    call = call_string,
    help_page = help_page,
    data = data_info,
    factors = factor_info(d_fitted),
    coef = named(coef(fit)),
    se = named(ct[, "Std. Error"]),
    coef_table = list(
      columns = I(colnames(ct)),
      rows = I(rownames(ct)),
      Estimate = named(ct[, 1]), Std.Error = named(ct[, 2]),
      t.value = named(ct[, 3]), p.value = named(ct[, 4])),
    sigma = s$sigma,                     # residual standard error sqrt(RSS/(n-p))
    df_residual = df.residual(fit),
    logLik = as.numeric(ll),
    logLik_df = attr(ll, "df"),          # p + 1 (sigma counted)
    AIC = AIC(fit),
    BIC = BIC(fit),
    nobs = nobs(fit),
    rss = deviance(fit),                 # residual sum of squares
    getInitial = named(init),
    vcov = lapply(seq_len(nrow(vcov(fit))), function(i) named(vcov(fit)[i, ])),
    vcov_rows = I(rownames(vcov(fit))),
    convInfo = list(isConv = ci$isConv, finIter = ci$finIter,
                    finTol = ci$finTol, stopMessage = ci$stopMessage),
    fitted = unname(as.numeric(fitted(fit))),
    warnings = warnings,
    conventions = paste(
      "sigma = sqrt(rss/df_residual); se = sigma * sqrt(diag((J'J)^-1));",
      "logLik = -n/2*(log(2*pi) + 1 - log(n) + log(rss)) (ML, unweighted);",
      "AIC = -2 logLik + 2*(p+1); BIC = -2 logLik + (p+1)*log(n).")
  )
  ## Same fit continued with a much tighter convergence tolerance, so the
  ## 'true' optimum is available when the default stop differs slightly.
  tight <- tryCatch({
    cl <- getCall(fit)
    cl$control <- quote(nls.control(tol = 1e-10, maxiter = 1000, warnOnly = TRUE))
    ft <- suppressWarnings(eval(cl, envir = env))
    list(control = "nls.control(tol = 1e-10, maxiter = 1000, warnOnly = TRUE)",
         coef = named(coef(ft)), rss = deviance(ft),
         logLik = as.numeric(logLik(ft)),
         isConv = ft$convInfo$isConv, stopMessage = ft$convInfo$stopMessage,
         max_rel_coef_change = max(abs(coef(ft) / coef(fit) - 1)))
  }, error = function(e) list(error = conditionMessage(e)))
  res$tight_tolerance_refit <- tight
  if (!is.null(notes)) res$notes <- notes
  ## Independent check of the logLik formula used above.
  n <- nobs(fit); rss <- deviance(fit)
  stopifnot(abs(res$logLik - (-n / 2 * (log(2 * pi) + 1 - log(n) + log(rss)))) < 1e-9)
  res
}

## One case: subset data, getInitial(), nls(), record, write JSON + CSV.
## 'fit_expr' and 'init_expr' are quoted calls, evaluated with the data
## object bound under 'data_name' so the recorded call reads like the
## help page's.
run_case <- function(name, file_stem, help_page, data_name, d, data_expr,
                     formula_text, csv_file, notes = NULL,
                     nls_extra = "", fit_data = d, fit_data_name = data_name) {
  env <- new.env()
  assign(data_name, d, envir = env)
  assign(fit_data_name, fit_data, envir = env)
  call_string <- sprintf("nls(%s, data = %s%s)", formula_text, fit_data_name, nls_extra)
  init_string <- sprintf("getInitial(%s, data = %s)", formula_text, data_name)
  init <- eval(parse(text = init_string), envir = env)
  cap <- capture(eval(parse(text = call_string), envir = env))
  fit <- cap$value
  write_data(fit_data, csv_file)
  data_info <- list(csv = csv_file, r_expression = data_expr,
                    nrow_csv = nrow(fit_data), nobs_fit = nobs(fit),
                    getInitial_call = init_string)
  rec <- nls_record(name, call_string, fit, init, data_info, fit_data,
                    help_page, env, notes, cap$warnings)
  write_ref(rec, sprintf("nls_%s.json", file_stem))
  invisible(fit)
}

## -------------------------------------------------------------- cases ----
## Each subset expression and model call copies the Examples section of the
## help page named in 'help_page' (R 4.2.2).

## ?SSasymp
Lob.329 <- Loblolly[Loblolly$Seed == "329", ]
run_case("SSasymp", "SSasymp", "?SSasymp", "Lob.329", Lob.329,
         'Loblolly[Loblolly$Seed == "329", ]',
         "height ~ SSasymp(age, Asym, resp0, lrc)", "data_Lob329.csv")

## ?SSasympOff
CO2.Qn1 <- CO2[CO2$Plant == "Qn1", ]
run_case("SSasympOff", "SSasympOff", "?SSasympOff", "CO2.Qn1", CO2.Qn1,
         'CO2[CO2$Plant == "Qn1", ]',
         "uptake ~ SSasympOff(conc, Asym, lrc, c0)", "data_CO2_Qn1.csv")

## ?SSasympOrig
run_case("SSasympOrig", "SSasympOrig", "?SSasympOrig", "Lob.329", Lob.329,
         'Loblolly[Loblolly$Seed == "329", ]',
         "height ~ SSasympOrig(age, Asym, lrc)", "data_Lob329.csv")

## ?SSbiexp
Indo.1 <- Indometh[Indometh$Subject == 1, ]
run_case("SSbiexp", "SSbiexp", "?SSbiexp", "Indo.1", Indo.1,
         "Indometh[Indometh$Subject == 1, ]",
         "conc ~ SSbiexp(time, A1, lrc1, A2, lrc2)", "data_Indo1.csv")

## ?SSfol
Theoph.1 <- Theoph[Theoph$Subject == 1, ]
run_case("SSfol", "SSfol", "?SSfol", "Theoph.1", Theoph.1,
         "Theoph[Theoph$Subject == 1, ]",
         "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)", "data_Theoph1.csv")

## ?SSfpl  -- the help page uses Chick.1 and Time (not DNase)
Chick.1 <- ChickWeight[ChickWeight$Chick == 1, ]
run_case("SSfpl", "SSfpl", "?SSfpl", "Chick.1", Chick.1,
         "ChickWeight[ChickWeight$Chick == 1, ]",
         "weight ~ SSfpl(Time, A, B, xmid, scal)", "data_Chick1.csv")

## ?SSgompertz -- DNase run 1 with log(conc) as the covariate
DNase.1 <- subset(DNase, Run == 1)
run_case("SSgompertz", "SSgompertz", "?SSgompertz", "DNase.1", DNase.1,
         "subset(DNase, Run == 1)",
         "density ~ SSgompertz(log(conc), Asym, b2, b3)", "data_DNase1.csv")

## ?SSlogis
run_case("SSlogis", "SSlogis", "?SSlogis", "Chick.1", Chick.1,
         "ChickWeight[ChickWeight$Chick == 1, ]",
         "weight ~ SSlogis(Time, Asym, xmid, scal)", "data_Chick1.csv",
         notes = paste(
           "?SSlogis notes the default fit stops at 0 iterations (initial values",
           "accepted) and that tol = 1e-9 improves them slightly (rel. diff ~9.6e-6);",
           "see tight_tolerance_refit."))

## ?SSmicmen
PurTrt <- Puromycin[Puromycin$state == "treated", ]
run_case("SSmicmen", "SSmicmen", "?SSmicmen", "PurTrt", PurTrt,
         'Puromycin[Puromycin$state == "treated", ]',
         "rate ~ SSmicmen(conc, Vm, K)", "data_PurTrt.csv")

## ?SSweibull -- Chick 6 without the Time == 0 row
Chick.6 <- subset(ChickWeight, (Chick == 6) & (Time > 0))
run_case("SSweibull", "SSweibull", "?SSweibull", "Chick.6", Chick.6,
         "subset(ChickWeight, (Chick == 6) & (Time > 0))",
         "weight ~ SSweibull(Time, Asym, Drop, lrc, pwr)", "data_Chick6.csv")

## Extra: expression argument (log(conc)) plus nls(subset=) on the FULL DNase.
## getInitial() has no subset argument, so it is evaluated on DNase.1 (the
## same 16 rows). The CSV holds all 176 DNase rows; the fit uses Run == 1.
run_case("SSfpl_logconc_DNase1", "SSfpl_logconc_DNase1",
         "(no help page; expression covariate + subset=)",
         "DNase.1", DNase.1, "DNase (full, 176 rows); subset = Run == 1",
         "density ~ SSfpl(log(conc), A, B, xmid, scal)", "data_DNase.csv",
         nls_extra = ", subset = Run == 1",
         fit_data = DNase, fit_data_name = "DNase",
         notes = paste(
           "Fitted with nls(..., data = DNase, subset = Run == 1): 16 of the 176 rows in",
           "data_DNase.csv (column Run == '1'). getInitial() was evaluated on",
           "subset(DNase, Run == 1) because it has no subset argument."))

## Same model fitted to DNase.1 directly must agree exactly with the subset= fit.
f_a <- nls(density ~ SSfpl(log(conc), A, B, xmid, scal), data = DNase, subset = Run == 1)
f_b <- nls(density ~ SSfpl(log(conc), A, B, xmid, scal), data = DNase.1)
stopifnot(isTRUE(all.equal(coef(f_a), coef(f_b), tolerance = 1e-12)))

cat("done\n")
