# Re-run the `call` of every reference in refs/ (the copied round2 A*.json and
# cbpp_glmer_laplace.json, and the G*.json made by make_glmm_refs.R) on the
# CSV data in data/ (factor levels restored from the .levels.json files, then
# the JSON's dataset$data_prep, if any) and compare logLik (tolerance 1e-6,
# absolute) and the fixed effects. Also checks that the round2 CSVs equal the
# packages' own data sets.
#
# Run from this folder:  Rscript check_refs.R
# Writes check_refs.json (the comparison table).

source("glmm_ref_utils.R")

files <- c(sort(Sys.glob("refs/A*.json")), "refs/cbpp_glmer_laplace.json", sort(Sys.glob("refs/G*.json")))
rows <- list()
for (f in files) {
  ref <- fromJSON(f, simplifyVector = FALSE)
  call_text <- if (!is.null(ref$call)) ref$call else ref$r_call
  dname <- if (is.list(ref$dataset)) ref$dataset$name else ref$dataset
  csvname <- if (is.list(ref$dataset)) sub("\\.csv$", "", basename(ref$dataset$file)) else "cbpp"
  df <- read_dataset(csvname, "data")
  if (is.list(ref$dataset) && !is.null(ref$dataset$data_prep)) {
    e <- list2env(setNames(list(df), dname))
    eval(parse(text = ref$dataset$data_prep), envir = e)
    df <- get(dname, envir = e)
  }
  if (is.null(ref$logLik)) {   # a case whose fit failed when it was made
    run <- run_call(call_text, setNames(list(df), dname))
    rows[[length(rows) + 1]] <- list(file = f, call = call_text, logLik_ref = NULL,
      status_ref = ref$status, error_ref = ref$error, error_rerun = run$error)
    cat(sprintf("%-45s (no logLik in ref: status %s) rerun error: %s\n", basename(f),
                ref$status, if (is.null(run$error)) "none" else run$error))
    next
  }
  run <- run_call(call_text, setNames(list(df), dname))
  ll <- if (is.null(run$fit)) NA_real_ else as.numeric(logLik(run$fit))
  fe <- if (is.null(run$fit)) NA else {
    b <- if (inherits(run$fit, "glmmTMB")) fixef(run$fit)$cond else fixef(run$fit)
    max(abs(b - unlist(ref$fixef)[names(b)]))
  }
  d <- abs(ll - ref$logLik)
  rows[[length(rows) + 1]] <- list(file = f, call = call_text, logLik_ref = ref$logLik,
    logLik_rerun = ll, abs_diff = d, max_abs_fixef_diff = fe,
    ok_1e6 = isTRUE(d < 1e-6), warnings = arr(run$warnings),
    messages = arr(run$messages), error = run$error)
  cat(sprintf("%-45s ref=% .10f rerun=% .10f |d|=%.2e fixef|d|=%.2e %s\n", basename(f),
              ref$logLik, ll, d, fe, if (isTRUE(d < 1e-6)) "OK" else "MISMATCH"))
}

# CSV versus the package data (values and factor levels)
pkg <- list(cbpp = lme4::cbpp, Owls = glmmTMB::Owls, Salamanders = glmmTMB::Salamanders,
            Arabidopsis_f = within(lme4::Arabidopsis, {
              nutrient <- factor(nutrient); rack <- factor(rack) }))
csv_check <- lapply(names(pkg), function(n) {
  a <- read_dataset(n, "data"); b <- as.data.frame(pkg[[n]])[, names(a)]
  same <- isTRUE(all.equal(a, b, check.attributes = FALSE))
  cat(sprintf("data/%s.csv equals package data: %s\n", n, same))
  list(dataset = n, equal_to_package_data = same,
       detail = if (same) NULL else paste(all.equal(a, b, check.attributes = FALSE), collapse = "; "))
})
write_ref_json(list(versions = versions_block(), tolerance = 1e-6, fits = rows,
                    csv_vs_package = csv_check), "check_refs.json")
