#!/usr/bin/env Rscript
## nlme references for residual diagnostics of the varcorr fits: residuals of
## every type, fitted values, ACF() and Variogram() (with the model
## semivariogram nlme attaches for spatial correlation structures).
##
## Run from the repository root:
##     Rscript tests/refs/varcorr/diagnostics/make_diagnostics_refs.R
## Writes tests/refs/varcorr/diagnostics/<case>.json (one per case and method).
##
## The data are read from ../data exactly as ../make_varcorr_refs.R reads them
## (read_dataset() of ../varcorr_ref_utils.R: CSV + .levels.json), and each
## model call is the same text as in ../refs/<case>.json.
##
## Row order. lme() and gls() sort the rows by the grouping factor's level
## order internally and store residuals and fitted values back in the data's
## order. resid(type = "normalized") then applies the correlation factor,
## which is laid out in the sorted order, to residuals in the data order
## (nlme 3.1-162, residuals.lme / residuals.gls -> recalc()). When the data are
## not sorted by group and groups differ in size or positions (Ovary: Mare's
## levels are 4 < 2 < 11 < ..., the rows come 1, 2, 3, ...; group sizes 25..31),
## rows near group boundaries are whitened with the wrong neighbours. So every
## model is fitted twice:
##   fit      the call on the CSV rows (the data order)
##   fit_sorted the same call on the rows sorted by the grouping factor
##            (order(), stable: the order within a group is kept, so every
##            correlation structure sees the same times / positions)
## and the references are taken from fit_sorted and put back in the CSV's row
## order. The JSON records that both fits have the same logLik, that their
## response / Pearson residuals and fitted values agree, a direct computation
## of the normalized residuals (forwardsolve of each group's
## t(chol(corMatrix)) on the Pearson residuals; "manual"), and nlme's own
## normalized residuals of `fit` with the number of rows where they differ.
## ACF() and Variogram() are computed on fit_sorted for the same reason.
##
## R 4.2.2, nlme 3.1-162, jsonlite 1.8.4.

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
varcorr <- dirname(here)
source(file.path(varcorr, "varcorr_ref_utils.R"))
data_dir <- file.path(varcorr, "data")

D <- list(
  Orthodont = read_dataset("Orthodont", data_dir),
  Ovary = read_dataset("Ovary", data_dir),
  BodyWeight = read_dataset("BodyWeight", data_dir),
  spatial_sim = read_dataset("spatial_sim", data_dir))

# id (as in ../refs), data, call (with method = "%s"), diagnostics (text, fit = the model)
V05_VARIO <- c(
  'Variogram(fit, form = ~ Time)',
  'Variogram(fit, form = ~ Time, resType = "normalized")',
  'Variogram(fit, form = ~ Time, robust = TRUE)',
  'Variogram(fit, form = ~ Time, maxDist = 30)',
  'Variogram(fit, form = ~ Time, collapse = "fixed", nint = 8)',
  'Variogram(fit, form = ~ Time, collapse = "none")',
  'Variogram(fit)')
cases <- list(
  list("V01_orthodont_lme_varident", "Orthodont",
       'lme(distance ~ age + Sex, data = Orthodont, random = ~ 1 | Subject, weights = varIdent(form = ~ 1 | Sex), method = "%s")',
       character(0)),
  list("V02_ovary_lme_ar1", "Ovary",
       'lme(follicles ~ sin(2*pi*Time) + cos(2*pi*Time), data = Ovary, random = ~ 1 | Mare, correlation = corAR1(), method = "%s")',
       c('ACF(fit, resType = "normalized")', 'ACF(fit, resType = "pearson")',
         'ACF(fit, maxLag = 5, resType = "response")')),
  list("V05_bodyweight_lme_car1", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, correlation = corCAR1(form = ~ Time), method = "%s")',
       c('ACF(fit, resType = "normalized")', 'ACF(fit, resType = "pearson")', V05_VARIO)),
  list("V06_bodyweight_lme_varpower_car1", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, weights = varPower(), correlation = corCAR1(form = ~ Time), method = "%s")',
       character(0)),
  list("V07_orthodont_gls_corsymm_varident", "Orthodont",
       'gls(distance ~ age * Sex, data = Orthodont, correlation = corSymm(form = ~ 1 | Subject), weights = varIdent(form = ~ 1 | age), method = "%s")',
       character(0)),
  list("V13_bodyweight_lme_corexp_nugget", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, correlation = corExp(form = ~ Time, nugget = TRUE), method = "%s")',
       c('Variogram(fit, form = ~ Time)', 'Variogram(fit, form = ~ Time, resType = "response")',
         'Variogram(fit$modelStruct$corStruct)')),
  list("V15_spatial_gls_corexp_nugget", "spatial_sim",
       'gls(resp ~ z, data = spatial_sim, correlation = corExp(form = ~ x + y, nugget = TRUE), method = "%s")',
       c('Variogram(fit, form = ~ x + y)', 'Variogram(fit, form = ~ x + y, resType = "normalized")',
         'Variogram(fit, form = ~ x + y, robust = TRUE, maxDist = 5)',
         'Variogram(fit, form = ~ x + y, resType = "response")',
         'Variogram(fit)', 'Variogram(fit$modelStruct$corStruct)',
         'Variogram(fit$modelStruct$corStruct, sig2 = 2, length.out = 7)'))
)

DIAG_CALLS <- list(
  response = 'resid(fit, type = "response")',
  pearson = 'resid(fit, type = "pearson")',
  normalized = 'resid(fit, type = "normalized")',
  fitted = 'fitted(fit)')

# Numbers at full precision (17 significant digits; jsonlite's digits = NA keeps 15):
# written verbatim into the JSON, non-finite values as null.
full <- function(x) structure(paste0("[", paste(ifelse(is.finite(x), sprintf("%.17g", x), "null"),
                                                collapse = ","), "]"), class = "json")
full1 <- function(x) structure(sprintf("%.17g", x), class = "json")
write_full_json <- function(x, path) {
  jsonlite::write_json(x, path, digits = NA, auto_unbox = TRUE, pretty = TRUE,
                       null = "null", na = "null", json_verbatim = TRUE)
}

eval_in <- function(text, fit) eval(parse(text = text)[[1]], envir = list2env(list(fit = fit)))

# the grouping nlme sorts by: lme's innermost level, gls's correlation groups (or none)
sort_groups <- function(fit) {
  g <- getGroups(fit)
  if (is.data.frame(g)) g <- g[[ncol(g)]]
  g
}

manual_normalized <- function(fit, grps) {
  rp <- unname(resid(fit, type = "pearson"))
  cs <- fit$modelStruct$corStruct
  if (is.null(cs)) return(rp)
  C <- corMatrix(cs)
  if (!is.list(C)) return(drop(forwardsolve(t(chol(C)), rp)))
  out <- rep(NA_real_, length(rp))
  for (s in names(C)) {
    i <- which(as.character(grps) == s)
    out[i] <- forwardsolve(t(chol(C[[s]])), rp[i])
  }
  out
}

acf_block <- function(a) list(
  class = arr(class(a)), lag = full(a$lag), ACF = full(a$ACF),
  n_used = full(as.numeric(attr(a, "n.used"))))

vario_frame <- function(v) {
  out <- list(class = arr(class(v)), variog = full(v$variog), dist = full(v$dist))
  if (!is.null(v$n.pairs)) out$n_pairs <- full(as.numeric(v$n.pairs))
  if (!is.null(attr(v, "collapse"))) out$collapse <- attr(v, "collapse")
  mv <- attr(v, "modelVariog")
  if (!is.null(mv)) out$modelVariog <- list(variog = full(mv$variog), dist = full(mv$dist))
  out
}

one_case <- function(cs, method) {
  id <- sprintf("%s_%s", cs[[1]], tolower(method))
  dname <- cs[[2]]
  call <- sprintf(cs[[3]], method)
  data <- D[[dname]]
  fit <- run_call(call, setNames(list(data), dname))
  stopifnot(is.null(fit$error)); fit <- fit$fit
  g <- sort_groups(fit)
  ord <- if (is.null(g)) seq_len(nrow(data)) else order(g)
  sorted <- data[ord, , drop = FALSE]
  fit_sorted <- run_call(call, setNames(list(sorted), dname))
  stopifnot(is.null(fit_sorted$error)); fit_sorted <- fit_sorted$fit
  back <- order(ord)  # sorted position of each CSV row

  values <- lapply(DIAG_CALLS, function(cl) unname(as.numeric(eval_in(cl, fit_sorted)))[back])
  csv_fit <- lapply(DIAG_CALLS, function(cl) unname(as.numeric(eval_in(cl, fit))))
  man <- manual_normalized(fit_sorted, sort_groups(fit_sorted))[back]
  y <- data[[all.vars(formula(fit))[1]]]
  differ <- which(abs(csv_fit$normalized - values$normalized) > 1e-10)
  checks <- list(
    logLik_fit = as.numeric(logLik(fit)), logLik_fit_sorted = as.numeric(logLik(fit_sorted)),
    logLik_abs_diff = abs(as.numeric(logLik(fit)) - as.numeric(logLik(fit_sorted))),
    max_abs_diff_response = max(abs(csv_fit$response - values$response)),
    max_abs_diff_pearson = max(abs(csv_fit$pearson - values$pearson)),
    max_abs_diff_fitted = max(abs(csv_fit$fitted - values$fitted)),
    max_abs_diff_manual_normalized = max(abs(man - values$normalized)),
    max_abs_y_minus_fitted_minus_response = max(abs(y - values$fitted - values$response)),
    nlme_csv_order_normalized_rows_differing = length(differ),
    nlme_csv_order_normalized_max_abs_diff = max(abs(csv_fit$normalized - values$normalized)))
  stopifnot(checks$logLik_abs_diff < 1e-8, checks$max_abs_diff_pearson < 1e-6,
            checks$max_abs_diff_manual_normalized < 1e-10,
            checks$max_abs_y_minus_fitted_minus_response < 1e-8)

  # getData() of a gls fit evaluates the call's `data` name: make it the sorted rows
  assign(dname, sorted, envir = globalenv())
  on.exit(rm(list = dname, envir = globalenv()))
  diagnostics <- lapply(cs[[4]], function(cl) {
    r <- eval_in(cl, fit_sorted)
    body <- if (inherits(r, "ACF")) acf_block(r) else vario_frame(r)
    c(list(call = cl), body)
  })
  out <- list(
    case = id, engine = engine_of(call), versions = versions_block(),
    dataset = list(name = dname, file = sprintf("data/%s.csv", dname),
                   levels_file = sprintf("data/%s.levels.json", dname), nrow = nrow(data)),
    call = call,
    fit_object = "`fit` in every call below is the model call evaluated on the CSV rows sorted by `sort_grouping` (fit_sorted); see row_order_note",
    sort_grouping = if (is.null(g)) NULL else {
      if (engine_of(call) == "nlme::lme") names(fit$groups)[ncol(fit$groups)] else
        deparse1(getGroupsFormula(fit$modelStruct$corStruct))
    },
    sort_order = arr(ord),
    row_order_note = "Residuals and fitted values are in the CSV's row order: computed on fit_sorted and put back (value[i] belongs to CSV row i). nlme 3.1-162's resid(type = 'normalized') of the fit on the CSV rows whitens residuals stored in the data order with the correlation factor laid out in the sorted order; `nlme_csv_order_normalized` keeps that output for the record and `checks` counts where it differs.",
    logLik = full1(as.numeric(logLik(fit_sorted))), sigma = full1(fit_sorted$sigma),
    calls = DIAG_CALLS,
    residuals = list(response = full(values$response), pearson = full(values$pearson),
                     normalized = full(values$normalized)),
    fitted = full(values$fitted),
    normalized_manual = full(man),
    nlme_csv_order_normalized = full(csv_fit$normalized),
    checks = checks,
    diagnostics = I(diagnostics),
    corStruct = cor_block(fit_sorted$modelStruct$corStruct),
    varStruct = var_block(fit_sorted$modelStruct$varStruct))
  write_full_json(out, file.path(here, paste0(id, ".json")))
  cat(sprintf("%-42s logLik=%.12g  manual=%.2e  nlme-csv-order differs in %d rows (max %.3g)\n",
              id, as.numeric(logLik(fit_sorted)), checks$max_abs_diff_manual_normalized, length(differ),
              checks$nlme_csv_order_normalized_max_abs_diff))
  invisible(out)
}

for (cs in cases) for (m in c("ML", "REML")) one_case(cs, m)
