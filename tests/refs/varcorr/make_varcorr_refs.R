#!/usr/bin/env Rscript
## nlme reference fits for residual variance functions (weights = var*()) and
## within-group correlation structures (correlation = cor*()).
##
## Run from the repository root:
##     Rscript tests/refs/varcorr/make_varcorr_refs.R
## Writes (under tests/refs/varcorr/):
##   data/<name>.csv + data/<name>.levels.json   data actually fitted
##   refs/<case>.json                             one fit each
## data/Orthodont.* and data/Ovary.* are copies of ../shared/refs/round2/data
## (not rewritten here; the script checks they equal nlme's data sets).
## Every fit is run on the data read back from the CSV (factor levels and
## order restored from .levels.json), not on nlme's groupedData objects.
##
## R 4.2.2, nlme 3.1-162, jsonlite 1.8.4.

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
source(file.path(here, "varcorr_ref_utils.R"))
data_dir <- file.path(here, "data")
ref_dir <- file.path(here, "refs")
dir.create(data_dir, showWarnings = FALSE)
dir.create(ref_dir, showWarnings = FALSE)
failed_dir <- file.path(ref_dir, "failed")
dir.create(failed_dir, showWarnings = FALSE)

## ------------------------------------------------------------------ data --

# Orthodont / Ovary: round2 copies; check they are nlme's data (values, row
# order, factor levels and ordering).
same_as <- function(name, orig) {
  d <- read_dataset(name, data_dir)
  o <- as.data.frame(orig); attr(o, "formula") <- NULL
  o <- o[, names(d)]
  stopifnot(nrow(d) == nrow(o))
  for (v in names(d)) {
    if (is.factor(o[[v]])) {
      stopifnot(identical(levels(d[[v]]), levels(o[[v]])),
                identical(is.ordered(d[[v]]), is.ordered(o[[v]])),
                identical(as.character(d[[v]]), as.character(o[[v]])))
    } else stopifnot(isTRUE(all.equal(d[[v]], as.numeric(o[[v]]), tolerance = 0)))
  }
  invisible(TRUE)
}
same_as("Orthodont", Orthodont)
same_as("Ovary", Ovary)

write_dataset(BodyWeight, "BodyWeight", data_dir,
  "nlme::BodyWeight (groupedData; Rat is an ordered factor)",
  "row order = nlme's; covariate-free correlation structures use the row order within group")
write_dataset(Dialyzer, "Dialyzer", data_dir,
  "nlme::Dialyzer (groupedData; Subject is an ordered factor)",
  "row order = nlme's; corAR1() uses the row order within Subject")
write_dataset(Oxboys, "Oxboys", data_dir,
  "nlme::Oxboys (groupedData; Subject and Occasion are ordered factors)")
write_dataset(Theoph, "Theoph", data_dir,
  "datasets::Theoph (groupedData; Subject is an ordered factor)")
write_dataset(Theoph[Theoph$Time > 0, ], "Theoph_tpos", data_dir,
  "datasets::Theoph[Theoph$Time > 0, ] (the 12 pre-dose rows dropped)",
  "SSfol's fitted value is 0 at Time = 0, so varPower()'s SD multiplier |fitted|^power is 0 there and the fit on all rows fails; these rows are dropped for the varPower() case")
write_dataset(Loblolly, "Loblolly", data_dir,
  "datasets::Loblolly (groupedData; Seed is an ordered factor)")
write_dataset(Orange, "Orange", data_dir,
  "datasets::Orange (groupedData; Tree is an ordered factor)")

# Simulated geostatistical data: one field, exponential covariance + nugget.
local({
  set.seed(20240607)
  n <- 80
  x <- round(runif(n, 0, 10), 4); y <- round(runif(n, 0, 10), 4)
  z <- round(rnorm(n), 4)
  D <- as.matrix(dist(cbind(x, y)))
  range <- 2; nug <- 0.2; s2 <- 1.5^2
  R <- (1 - nug) * exp(-D / range); diag(R) <- 1
  e <- drop(t(chol(s2 * R)) %*% rnorm(n))
  resp <- round(2 + 0.8 * z + e, 6)
  field <- data.frame(x = x, y = y, z = z, resp = resp)
  write_dataset(field, "spatial_sim", data_dir,
    "simulated in make_varcorr_refs.R: set.seed(20240607); x, y ~ U(0,10) (4 dp); z ~ N(0,1) (4 dp); resp = 2 + 0.8 z + e (6 dp), e ~ N(0, 1.5^2 * R), R = (1 - 0.2) exp(-dist/2) off the diagonal, 1 on it",
    "true values: beta = (2, 0.8), sigma = 1.5, corExp range = 2, nugget = 0.2")
})

ds <- function(name) {
  list(file = sprintf("data/%s.csv", name),
       levels_file = sprintf("data/%s.levels.json", name))
}
D <- list(
  Orthodont = read_dataset("Orthodont", data_dir),
  Ovary = read_dataset("Ovary", data_dir),
  BodyWeight = read_dataset("BodyWeight", data_dir),
  Dialyzer = read_dataset("Dialyzer", data_dir),
  Oxboys = read_dataset("Oxboys", data_dir),
  Theoph = read_dataset("Theoph", data_dir),
  Theoph_tpos = read_dataset("Theoph_tpos", data_dir),
  Loblolly = read_dataset("Loblolly", data_dir),
  Orange = read_dataset("Orange", data_dir),
  spatial_sim = read_dataset("spatial_sim", data_dir))
SRC <- list(
  Orthodont = "nlme::Orthodont (copy of shared/refs/round2/data/Orthodont.csv)",
  Ovary = "nlme::Ovary (copy of shared/refs/round2/data/Ovary.csv)",
  BodyWeight = "nlme::BodyWeight", Dialyzer = "nlme::Dialyzer",
  Oxboys = "nlme::Oxboys", Theoph = "datasets::Theoph",
  Theoph_tpos = "datasets::Theoph, rows with Time > 0",
  Loblolly = "datasets::Loblolly", Orange = "datasets::Orange",
  spatial_sim = "simulated (see data/spatial_sim.levels.json)")

## ----------------------------------------------------------------- cases --

# id, data, call (without method), description, methods, notes
cases <- list(
  list("V01_orthodont_lme_varident", "Orthodont",
       'lme(distance ~ age + Sex, data = Orthodont, random = ~ 1 | Subject, weights = varIdent(form = ~ 1 | Sex)',
       "Orthodont random intercept, residual SD by Sex (varIdent); same call as round2 B1"),
  list("V02_ovary_lme_ar1", "Ovary",
       'lme(follicles ~ sin(2*pi*Time) + cos(2*pi*Time), data = Ovary, random = ~ 1 | Mare, correlation = corAR1()',
       "Ovary random intercept + AR(1) in row order within Mare (corAR1() inherits ~ 1 | Mare); same call as round2 B2"),
  list("V03_ovary_lme_arma11", "Ovary",
       'lme(follicles ~ sin(2*pi*Time) + cos(2*pi*Time), data = Ovary, random = ~ 1 | Mare, correlation = corARMA(p = 1, q = 1)',
       "Ovary random intercept + ARMA(1,1) in row order within Mare"),
  list("V04_bodyweight_lme_varpower", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, weights = varPower()',
       "BodyWeight random intercept+slope, SD = sigma * |fitted|^power"),
  list("V05_bodyweight_lme_car1", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, correlation = corCAR1(form = ~ Time)',
       "BodyWeight random intercept+slope, continuous-time AR(1) in Time within Rat"),
  list("V06_bodyweight_lme_varpower_car1", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, weights = varPower(), correlation = corCAR1(form = ~ Time)',
       "BodyWeight: varPower() and corCAR1(form = ~ Time) together"),
  list("V07_orthodont_gls_corsymm_varident", "Orthodont",
       'gls(distance ~ age * Sex, data = Orthodont, correlation = corSymm(form = ~ 1 | Subject), weights = varIdent(form = ~ 1 | age))',
       "Orthodont gls, unstructured 4x4 within-Subject correlation (row position) and a separate SD per age"),
  list("V08_orthodont_lme_varexp", "Orthodont",
       'lme(distance ~ age + Sex, data = Orthodont, random = ~ 1 | Subject, weights = varExp(form = ~ age)',
       "Orthodont random intercept, SD = sigma * exp(expon * age)"),
  list("V09_dialyzer_lme_varconstpower", "Dialyzer",
       'lme(rate ~ (pressure + I(pressure^2) + I(pressure^3) + I(pressure^4)) * QB, data = Dialyzer, random = ~ pressure + I(pressure^2) | Subject, weights = varConstPower(form = ~ pressure)',
       "Dialyzer (as V17 without corAR1), SD = sigma * (const + pressure^power)"),
  list("X09a_bodyweight_lme_varconstpower_fitted", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, weights = varConstPower()',
       "BodyWeight, SD = sigma * (const + |fitted|^power) -- returns a fit but degenerate (const ~ 4e6, nlminb codes 1 in the later outer iterations); kept as a record"),
  list("X09b_bodyweight_lme_varconstpower_time", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, weights = varConstPower(form = ~ Time)',
       "BodyWeight, SD = sigma * (const + Time^power) -- does not converge (kept as a record)"),
  list("V10_orthodont_lme_varfixed", "Orthodont",
       'lme(distance ~ age + Sex, data = Orthodont, random = ~ 1 | Subject, weights = varFixed(~ age)',
       "Orthodont random intercept, Var = sigma^2 * age (no variance parameters)"),
  list("V11_bodyweight_lme_varcomb", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, weights = varComb(varIdent(form = ~ 1 | Diet), varPower())',
       "BodyWeight, SD = sigma * ratio(Diet) * |fitted|^power"),
  list("V12_bodyweight_gls_compsymm", "BodyWeight",
       'gls(weight ~ Time * Diet, data = BodyWeight, correlation = corCompSymm(form = ~ 1 | Rat))',
       "BodyWeight gls with compound symmetry within Rat (the marginal model of a random intercept, but Rho may be negative)"),
  list("V13_bodyweight_lme_corexp_nugget", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, correlation = corExp(form = ~ Time, nugget = TRUE)',
       "BodyWeight, exponential correlation in Time within Rat with a nugget"),
  list("V14_bodyweight_lme_corgaus", "BodyWeight",
       'lme(weight ~ Time * Diet, data = BodyWeight, random = ~ Time | Rat, correlation = corGaus(form = ~ Time)',
       "BodyWeight, Gaussian correlation in Time within Rat (no nugget)"),
  list("V15_spatial_gls_corexp_nugget", "spatial_sim",
       'gls(resp ~ z, data = spatial_sim, correlation = corExp(form = ~ x + y, nugget = TRUE))',
       "simulated field (one group, n = 80): exponential correlation in Euclidean (x, y) distance with a nugget"),
  list("V16_spatial_gls_corgaus_nugget", "spatial_sim",
       'gls(resp ~ z, data = spatial_sim, correlation = corGaus(form = ~ x + y, nugget = TRUE))',
       "simulated field: Gaussian correlation in (x, y) distance with a nugget"),
  list("V17_dialyzer_lme_varpower_ar1", "Dialyzer",
       'lme(rate ~ (pressure + I(pressure^2) + I(pressure^3) + I(pressure^4)) * QB, data = Dialyzer, random = ~ pressure + I(pressure^2) | Subject, weights = varPower(form = ~ pressure), correlation = corAR1()',
       "Dialyzer (Pinheiro & Bates fm4Dial.lme): varPower in pressure + AR(1) in row order within Subject"),
  list("V18_oxboys_lme_car1", "Oxboys",
       'lme(height ~ age + I(age^2), data = Oxboys, random = ~ age | Subject, correlation = corCAR1(form = ~ age))',
       "Oxboys quadratic growth, random intercept+slope, continuous AR(1) in (non-integer) age within Subject"),
  list("X18_oxboys_lme_car1_linear", "Oxboys",
       'lme(height ~ age, data = Oxboys, random = ~ age | Subject, correlation = corCAR1(form = ~ age))',
       "Oxboys linear growth + corCAR1(form = ~ age) -- does not converge (kept as a record)"),
  list("V19_theoph_nlme_varpower", "Theoph_tpos",
       'nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph_tpos, fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1), groups = ~ Subject, start = c(lKe = -2.4, lKa = 0.45, lCl = -3.2), weights = varPower()',
       "Theoph (Time > 0 rows) first-order compartment model, diagonal random lKa, lCl, SD = sigma * |fitted|^power",
       "the same call on all 132 rows fails (X19): SSfol's fitted value is 0 at Time = 0"),
  list("V20_loblolly_nlme_varpower", "Loblolly",
       'nlme(height ~ SSasymp(age, Asym, R0, lrc), data = Loblolly, fixed = Asym + R0 + lrc ~ 1, random = Asym ~ 1, groups = ~ Seed, start = c(Asym = 103, R0 = -8.5, lrc = -3.3), weights = varPower()',
       "Loblolly asymptotic growth, random Asym, SD = sigma * |fitted|^power"),
  list("V21_orange_nlme_varpower", "Orange",
       'nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange, fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1, groups = ~ Tree, start = c(Asym = 192, xmid = 728, scal = 353), weights = varPower()',
       "Orange logistic growth, random Asym, SD = sigma * |fitted|^power"),
  list("X19_theoph_nlme_varpower_allrows", "Theoph",
       'nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph, fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1), groups = ~ Subject, start = c(lKe = -2.4, lKa = 0.45, lCl = -3.2), weights = varPower()',
       "Theoph all rows with varPower() -- fails (fitted = 0 at Time = 0); kept as a record"),
  list("X20_theoph_nlme_varconstpower_allrows", "Theoph",
       'nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph, fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1), groups = ~ Subject, start = c(lKe = -2.4, lKa = 0.45, lCl = -3.2), weights = varConstPower(power = 0.5)',
       "Theoph all rows with varConstPower(power = 0.5) -- fails; kept as a record")
)

# Calls are listed either complete or without their closing parenthesis;
# add the method argument as the last argument.
with_method <- function(call, m) {
  complete <- !inherits(tryCatch(parse(text = call), error = function(e) e), "error")
  if (complete) call <- sub("\\)$", "", call)
  sprintf("%s, method = \"%s\")", call, m)
}

install_opt_trace()
results <- list()
for (cs in cases) {
  for (m in c("ML", "REML")) {
    id <- sprintf("%s_%s", cs[[1]], tolower(m))
    call <- with_method(cs[[3]], m)
    spec <- list(case = id, description = sprintf("%s, %s", cs[[4]], m),
                 call = call, data_name = cs[[2]], data = D[[cs[[2]]]],
                 dataset = c(ds(cs[[2]]), list(source = SRC[[cs[[2]]]])),
                 notes = if (length(cs) >= 5) cs[[5]] else NULL)
    # X* cases are attempts recorded because they fail; written to refs/failed/
    r <- make_case(spec, if (grepl("^X", id)) failed_dir else ref_dir)
    results[[id]] <- r$out
  }
}
remove_opt_trace()

## summary table for the README
summ <- do.call(rbind, lapply(results, function(o) data.frame(
  case = o$case, status = o$status,
  converged = if (is.null(o$convergence)) NA else o$convergence$converged,
  logLik = if (is.null(o$logLik)) NA else o$logLik,
  apVar = if (is.null(o$apVar)) NA else o$apVar,
  stringsAsFactors = FALSE)))
write_ref_json(list(cases = summ), file.path(here, "summary.json"))
print(summ, digits = 15, row.names = FALSE)
