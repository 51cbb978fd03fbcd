#!/usr/bin/env Rscript
## Re-run every reference call in a fresh R session and compare with the JSON.
##
## Run from the repository root:
##     Rscript tests/refs/varcorr/check_varcorr_refs.R
## Reads refs/*.json, refs/failed/*.json and round2/*.json (the copies from
## shared/refs/round2); data come only from data/<name>.csv + .levels.json.
## Writes check_varcorr_refs.json next to this script.

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
source(file.path(here, "varcorr_ref_utils.R"))   # helpers only; no trace installed
data_dir <- file.path(here, "data")

files <- c(Sys.glob(file.path(here, "refs", "*.json")),
           Sys.glob(file.path(here, "refs", "failed", "*.json")),
           Sys.glob(file.path(here, "round2", "*.json")))

reldiff <- function(a, b) {
  if (is.null(a) && is.null(b)) return(0)
  a <- unlist(a); b <- unlist(b)
  if (length(a) != length(b)) return(Inf)
  if (!length(a)) return(0)
  max(abs(a - b) / pmax(abs(b), 1e-8))
}

rows <- list()
for (f in files) {
  ref <- jsonlite::fromJSON(f, simplifyVector = FALSE)
  dname <- ref$dataset$name
  d <- read_dataset(dname, data_dir)
  env <- list2env(setNames(list(d), dname), parent = globalenv())
  err <- NULL
  fit <- tryCatch(suppressWarnings(eval(parse(text = ref$call)[[1]], envir = env)),
                  error = function(e) { err <<- conditionMessage(e); NULL })
  rel <- sub(paste0(here, "/"), "", f, fixed = TRUE)
  row <- list(file = rel, case = ref$case, call = ref$call,
              ref_status = ref$status, rerun_error = err)
  if (is.null(fit)) {
    row$logLik_ref <- ref$logLik
    row$logLik_rerun <- NULL
    row$pass <- identical(ref$status, "error")   # expected to fail
    row$check <- "reference recorded an error; the rerun must error too"
  } else {
    ll <- as.numeric(logLik(fit))
    fe <- if (inherits(fit, "gls")) coef(fit) else fixef(fit)
    vs <- fit$modelStruct$varStruct; cs <- fit$modelStruct$corStruct
    row$logLik_ref <- ref$logLik
    row$logLik_rerun <- ll
    row$abs_diff_logLik <- if (is.null(ref$logLik)) NA else abs(ll - ref$logLik)
    row$max_rel_diff_fixef <- reldiff(nlist(fe), ref$fixef)
    row$rel_diff_sigma <- reldiff(fit$sigma, ref$sigma)
    if (!is.null(vs) && length(coef(vs)))
      row$max_rel_diff_varStruct_coef <- reldiff(coef(vs, unconstrained = FALSE),
                                                 ref$varStruct$coef)
    if (!is.null(cs))
      row$max_rel_diff_corStruct_coef <- reldiff(coef(cs, unconstrained = FALSE),
                                                 ref$corStruct$coef)
    row$pass <- !is.null(ref$logLik) && abs(ll - ref$logLik) <= 1e-8 * max(1, abs(ref$logLik)) &&
      row$max_rel_diff_fixef <= 1e-6
    row$check <- "|logLik_rerun - logLik_ref| <= 1e-8 * max(1, |logLik_ref|) and fixef max rel diff <= 1e-6"
  }
  rows[[length(rows) + 1]] <- row
  cat(sprintf("%-48s %-5s ref=%-20s rerun=%-20s\n", ref$case,
              if (isTRUE(row$pass)) "PASS" else "FAIL",
              if (is.null(ref$logLik)) "NA" else format(ref$logLik, digits = 15),
              if (is.null(row$logLik_rerun)) "error" else format(row$logLik_rerun, digits = 15)))
}
out <- list(
  description = "each JSON's call re-evaluated in a fresh R session on data read back from data/*.csv (+ .levels.json)",
  versions = versions_block(),
  n_files = length(rows),
  n_pass = sum(vapply(rows, function(r) isTRUE(r$pass), logical(1))),
  results = rows)
write_ref_json(out, file.path(here, "check_varcorr_refs.json"))
cat(sprintf("%d / %d pass\n", out$n_pass, out$n_files))
