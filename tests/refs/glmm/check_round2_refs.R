# Re-run the `call` of every copied round2 GLMM reference (refs/A*.json and
# refs/cbpp_glmer_laplace.json) on the CSV data in data/ (factor levels
# restored from the .levels.json files) and compare logLik (tolerance 1e-6,
# absolute) and the fixed effects. Also checks that each CSV round-trips to
# the package's own data set.
#
# Run from this folder:  Rscript check_round2_refs.R
# Writes check_round2_refs.json (the comparison table).

source("glmm_ref_utils.R")

files <- c(sort(Sys.glob("refs/A*.json")), "refs/cbpp_glmer_laplace.json")
rows <- list()
for (f in files) {
  ref <- fromJSON(f, simplifyVector = FALSE)
  call_text <- if (!is.null(ref$call)) ref$call else ref$r_call
  dname <- if (is.list(ref$dataset)) ref$dataset$name else ref$dataset
  csvname <- if (is.list(ref$dataset)) sub("\\.csv$", "", basename(ref$dataset$file)) else "cbpp"
  df <- read_dataset(csvname, "data")
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
                    csv_vs_package = csv_check), "check_round2_refs.json")
