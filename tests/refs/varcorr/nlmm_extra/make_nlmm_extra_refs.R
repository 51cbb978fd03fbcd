#!/usr/bin/env Rscript
## Extra nlme() references for bmx.nlmm(weights=, correlation=):
##   * N19-N21: V19-V21 (varPower(), ../refs) refitted with tight controls. nlme's
##     defaults (pnlsTol = 1e-3, tolerance = 1e-5) stop the PNLS/LME alternation
##     early: power, sigma and some fixed effects sit up to ~8e-4 (relative) from
##     the fixed point a tight run reaches.
##   * N22: Loblolly, varPower() + corAR1() (AR(1) in the row order within Seed).
##   * N23: ChickWeight, logistic growth with corCAR1(form = ~ Time) (continuous
##     AR(1) in days within Chick); nlme's default run stops 0.01-0.02 logLik short
##     of the tight fixed point, so compare with the tight JSON.
##   * N24: Orange, corAR1().
## N22-N24 are written twice: the default call (<case>_<method>.json) and the same
## call with tight controls (<case>_tight_<method>.json). N* JSONs add
## fitted_level1, resid_pearson, resid_normalized and resid_normalized_by_group
## (data row order; see resid_note: nlme's own normalised residuals are wrong on
## the first row of some groups).
##   * G25, G26: gnls() (no random effects) with varPower() (+ corAR1()), tight
##     controls, a short record (see below).
##
## Run from the repository root:
##     Rscript tests/refs/varcorr/nlmm_extra/make_nlmm_extra_refs.R
## Writes tests/refs/varcorr/nlmm_extra/<case>.json and data/ChickWeight.{csv,levels.json}.
## Uses ../varcorr_ref_utils.R (make_case: the JSON fields of ../README.md) and the
## data of ../data. R 4.2.2, nlme 3.1-162, jsonlite 1.8.4.

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
source(file.path(here, "..", "varcorr_ref_utils.R"))
data_dir <- file.path(here, "..", "data")
own_data <- file.path(here, "data")
dir.create(own_data, showWarnings = FALSE)

write_dataset(ChickWeight, "ChickWeight", own_data,
  "datasets::ChickWeight (groupedData; Chick is an ordered factor)",
  "row order = R's; corCAR1(form = ~ Time) uses the Time covariate within Chick")

D <- list(
  Theoph_tpos = read_dataset("Theoph_tpos", data_dir),
  Loblolly = read_dataset("Loblolly", data_dir),
  Orange = read_dataset("Orange", data_dir),
  ChickWeight = read_dataset("ChickWeight", own_data)
)
ds <- function(name, dir) list(file = file.path(dir, paste0(name, ".csv")),
                               levels_file = file.path(dir, paste0(name, ".levels.json")))
FILES <- list(Theoph_tpos = ds("Theoph_tpos", "../data"), Loblolly = ds("Loblolly", "../data"),
              Orange = ds("Orange", "../data"), ChickWeight = ds("ChickWeight", "data"))

TIGHT <- "control = nlmeControl(pnlsTol = 1e-6, tolerance = 1e-8, msTol = 1e-10, maxIter = 500)"

theoph <- 'nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph_tpos, fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1), groups = ~ Subject, start = c(lKe = -2.4, lKa = 0.45, lCl = -3.2)'
loblolly <- 'nlme(height ~ SSasymp(age, Asym, R0, lrc), data = Loblolly, fixed = Asym + R0 + lrc ~ 1, random = Asym ~ 1, groups = ~ Seed, start = c(Asym = 103, R0 = -8.5, lrc = -3.3)'
orange <- 'nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange, fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1, groups = ~ Tree, start = c(Asym = 192, xmid = 728, scal = 353)'
chick <- 'nlme(weight ~ SSlogis(Time, Asym, xmid, scal), data = ChickWeight, fixed = Asym + xmid + scal ~ 1, random = pdDiag(Asym + xmid ~ 1), groups = ~ Chick, start = c(Asym = 240, xmid = 17, scal = 6)'

# case, data, call without method (and without its closing parenthesis),
# description, tight-only
cases <- list(
  list("N19_theoph_nlme_varpower_tight", "Theoph_tpos", paste0(theoph, ", weights = varPower()"),
       "V19 with tight controls", TRUE),
  list("N20_loblolly_nlme_varpower_tight", "Loblolly", paste0(loblolly, ", weights = varPower()"),
       "V20 with tight controls", TRUE),
  list("N21_orange_nlme_varpower_tight", "Orange", paste0(orange, ", weights = varPower()"),
       "V21 with tight controls", TRUE),
  list("N22_loblolly_nlme_varpower_ar1", "Loblolly",
       paste0(loblolly, ", weights = varPower(), correlation = corAR1()"),
       "Loblolly asymptotic growth, random Asym, SD = sigma * |fitted|^power, AR(1) in row order within Seed", FALSE),
  list("N23_chickweight_nlme_car1", "ChickWeight",
       paste0(chick, ", correlation = corCAR1(form = ~ Time)"),
       "ChickWeight logistic growth, diagonal random Asym, xmid, continuous AR(1) in Time within Chick", FALSE),
  list("N24_orange_nlme_ar1", "Orange", paste0(orange, ", correlation = corAR1()"),
       "Orange logistic growth, random Asym, AR(1) in row order within Tree", FALSE)
)

GROUP <- c(Theoph_tpos = "Subject", Loblolly = "Seed", Orange = "Tree", ChickWeight = "Chick")

# Pearson residuals whitened within each group by the fitted correlation matrix
normalized_by_group <- function(fit, data, data_name) {
  p <- unname(resid(fit, type = "pearson"))
  cs <- fit$modelStruct$corStruct
  if (is.null(cs)) return(p)
  cm <- corMatrix(cs)
  g <- as.character(data[[GROUP[[data_name]]]])
  out <- p
  for (level in unique(g)) {
    i <- which(g == level)
    out[i] <- forwardsolve(t(chol(cm[[level]])), p[i])
  }
  out
}

install_opt_trace()
for (cs in cases) {
  variants <- if (cs[[5]]) list(c("", TIGHT)) else list(c("", ""), c("_tight", TIGHT))
  for (v in variants) {
    for (m in c("ML", "REML")) {
      case_id <- sub("_tight$", "", cs[[1]])
      tight <- nzchar(v[2])
      id <- sprintf("%s%s_%s", case_id, if (tight) "_tight" else "", tolower(m))
      call <- sprintf('%s, method = "%s"%s)', cs[[3]], m, if (tight) paste0(", ", v[2]) else "")
      spec <- list(case = id, description = sprintf("%s, %s%s", cs[[4]], m,
                                                    if (tight) ", tight controls" else ""),
                   call = call, data_name = cs[[2]], data = D[[cs[[2]]]],
                   dataset = c(FILES[[cs[[2]]]], list(source = cs[[2]])))
      r <- make_case(spec, here)
      # residuals in the data's row order, for checking residuals("pearson"/"normalized")
      out <- r$out
      out$fitted_level1 <- arr(unname(fitted(r$fit)))
      out$resid_pearson <- arr(unname(resid(r$fit, type = "pearson")))
      out$resid_normalized <- arr(unname(resid(r$fit, type = "normalized")))
      out$resid_normalized_by_group <- arr(normalized_by_group(r$fit, spec$data, cs[[2]]))
      out$resid_note <- paste(
        "resid_* in the data's row order. resid_normalized is nlme's resid(type = 'normalized');",
        "for nlme() fits with a corStruct nlme 3.1-162 puts wrong values on the first row of",
        "some groups (ChickWeight, Chick 12: 5.38 where whitening gives the Pearson residual",
        "0.998). resid_normalized_by_group whitens the Pearson residuals group by group with",
        "t(chol(corMatrix(corStruct)[[group]])) (the Pearson residuals without a corStruct).")
      write_ref_json(out, file.path(here, paste0(id, ".json")))
    }
  }
}
remove_opt_trace()

## ----------------------------------------------------------- gnls ----------
## Without random effects nlmm's alternation is gnls(); gnls's default run stops
## after its NLS step leaves the estimates unchanged (Orange: power 1.572 vs the
## fixed point's 1.570), so G25 is a tight-control run. G26 is the default run:
## with tight controls gnls stops ("step halving factor reduced below minimum in
## NLS step", nlsTol 1e-6 to 1e-8). gnls has no REML.
## A short record: call, logLik, df, coef, sigma (gnls's, sqrt(RSS / (N - p))),
## the structures' coef and the elapsed time (median of 5).
gnls_cases <- list(
  list("G25_orange_gnls_varpower_tight", "Orange",
       'gnls(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange, start = c(Asym = 192, xmid = 728, scal = 353), weights = varPower()'),
  list("G26_loblolly_gnls_varpower_ar1", "Loblolly",
       'gnls(height ~ SSasymp(age, Asym, R0, lrc), data = Loblolly, start = c(Asym = 103, R0 = -8.5, lrc = -3.3), weights = varPower(), correlation = corAR1(form = ~ 1 | Seed))')
)
for (cs in gnls_cases) {
  call <- cs[[3]]
  if (grepl("_tight$", cs[[1]]))
    call <- paste0(call, ", control = gnlsControl(nlsTol = 1e-8, tolerance = 1e-8, msTol = 1e-10, maxIter = 500))")
  dl <- setNames(list(D[[cs[[2]]]]), cs[[2]])
  run <- run_call(call, dl)
  fit <- run$fit
  ms <- fit$modelStruct
  ll <- logLik(fit)
  out <- list(case = cs[[1]], engine = "nlme::gnls", versions = versions_block(),
              dataset = c(list(name = cs[[2]]), FILES[[cs[[2]]]], list(nrow = nrow(D[[cs[[2]]]]))),
              call = call, warnings = arr(run$warnings), method = "ML",
              nobs = nobs(fit), df = attr(ll, "df"), logLik = as.numeric(ll),
              AIC = AIC(fit), BIC = BIC(fit), fixef = nlist(coef(fit)), sigma = fit$sigma,
              sigma_note = "gnls's sigma = sqrt(RSS / (N - p)) (the ML sigma times sqrt(N / (N - p)))",
              varStruct = var_block(ms$varStruct), corStruct = cor_block(ms$corStruct),
              numIter = fit$numIter,
              elapsed_bench = bench_call(call, dl, reps = 5), factors = factors_block(D[[cs[[2]]]]))
  write_ref_json(out, file.path(here, paste0(cs[[1]], ".json")))
  cat(sprintf("%-44s logLik=%s\n", cs[[1]], format(out$logLik, digits = 15)))
}
