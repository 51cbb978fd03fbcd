#!/usr/bin/env Rscript
## nlme reference fits for the multi-start study of bayesmix's nonlinear ML/REML
## fit (bayesmix/nonlinear/ml_fit.py, Lindstrom-Bates alternation).
##
## Run from the repository root:
##     Rscript tests/refs/rfidelity/multistart/make_multistart_refs.R
## Writes, next to this script:
##   * <dataset>.csv          the data, as both R and bayesmix read them
##   * cases.json             the model specifications (read by compare_multistart.py)
##   * nlme_all.json          nlme's results for every case
## compare_multistart.py then fits each case in bayesmix and writes <case>.json
## (nlme's and bayesmix's numbers) for the cases where they differ.

suppressPackageStartupMessages({ library(nlme); library(jsonlite) })

out_dir <- "tests/refs/rfidelity/multistart"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

versions <- list(r_version = R.version.string,
                 nlme = as.character(packageVersion("nlme")),
                 jsonlite = as.character(packageVersion("jsonlite")),
                 generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"))

## ---- data (plain data frames; grouping column as character) -----------------
plain <- function(d, cols) { d <- as.data.frame(d)[, cols]
  for (c in cols) if (is.factor(d[[c]])) d[[c]] <- as.character(d[[c]]); d }
datasets <- list(
  Orange = plain(Orange, c("Tree", "age", "circumference")),
  Loblolly = plain(Loblolly, c("Seed", "age", "height")),
  ChickWeight = plain(ChickWeight, c("Chick", "Diet", "Time", "weight")),
  Soybean = plain(Soybean, c("Plot", "Variety", "Year", "Time", "weight")),
  CO2 = plain(CO2, c("Plant", "Type", "Treatment", "conc", "uptake")),
  DNase = transform(plain(DNase, c("Run", "conc", "density")), logconc = log(conc)),
  Theoph = plain(Theoph, c("Subject", "Wt", "Dose", "Time", "conc")),
  Indometh = plain(Indometh, c("Subject", "time", "conc"))
)
for (nm in names(datasets)) {
  f <- file.path(out_dir, paste0(nm, ".csv"))
  write.csv(datasets[[nm]], f, row.names = FALSE)
  datasets[[nm]] <- read.csv(f)   # what bayesmix reads
  cat("wrote", f, "\n")
}

## ---- cases -----------------------------------------------------------------
## mean: the mean-function text (R syntax, also bayesmix's formula right side)
## params: all parameters; random: those with a random effect per `group`
## start: NULL -> getInitial() of the self-starting model on the pooled data
mk <- function(id, data, response, mean, params, random, group, cov, start = NULL,
               note = "", fixed = NULL)
  list(id = id, data = data, response = response, mean = mean, params = params,
       random = I(random), group = group, cov = cov, start = start, note = note,
       fixed = if (is.null(fixed)) structure(list(), names = character(0)) else as.list(fixed))
factors <- list(ChickWeight = "Diet", Soybean = c("Variety", "Year"), CO2 = c("Type", "Treatment"))
logis <- "SSlogis(%s, Asym, xmid, scal)"
base <- list(
  mk("orange_A", "Orange", "circumference", sprintf(logis, "age"), c("Asym", "xmid", "scal"), c("Asym"), "Tree", "pdSymm"),
  mk("orange_AX_symm", "Orange", "circumference", sprintf(logis, "age"), c("Asym", "xmid", "scal"), c("Asym", "xmid"), "Tree", "pdSymm"),
  mk("orange_AX_diag", "Orange", "circumference", sprintf(logis, "age"), c("Asym", "xmid", "scal"), c("Asym", "xmid"), "Tree", "pdDiag"),
  mk("orange_AXS_symm", "Orange", "circumference", sprintf(logis, "age"), c("Asym", "xmid", "scal"), c("Asym", "xmid", "scal"), "Tree", "pdSymm"),
  mk("orange_AXS_diag", "Orange", "circumference", sprintf(logis, "age"), c("Asym", "xmid", "scal"), c("Asym", "xmid", "scal"), "Tree", "pdDiag"),
  mk("loblolly_A", "Loblolly", "height", "SSasymp(age, Asym, R0, lrc)", c("Asym", "R0", "lrc"), c("Asym"), "Seed", "pdSymm"),
  mk("loblolly_AL_symm", "Loblolly", "height", "SSasymp(age, Asym, R0, lrc)", c("Asym", "R0", "lrc"), c("Asym", "lrc"), "Seed", "pdSymm"),
  mk("loblolly_ARL_symm", "Loblolly", "height", "SSasymp(age, Asym, R0, lrc)", c("Asym", "R0", "lrc"), c("Asym", "R0", "lrc"), "Seed", "pdSymm"),
  mk("loblolly_ARL_diag", "Loblolly", "height", "SSasymp(age, Asym, R0, lrc)", c("Asym", "R0", "lrc"), c("Asym", "R0", "lrc"), "Seed", "pdDiag"),
  mk("chick_AXS_symm", "ChickWeight", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "xmid", "scal"), "Chick", "pdSymm"),
  mk("chick_AXS_diag", "ChickWeight", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "xmid", "scal"), "Chick", "pdDiag"),
  mk("chick_AX_symm", "ChickWeight", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "xmid"), "Chick", "pdSymm"),
  mk("soybean_AXS_symm", "Soybean", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "xmid", "scal"), "Plot", "pdSymm"),
  mk("soybean_AXS_diag", "Soybean", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "xmid", "scal"), "Plot", "pdDiag"),
  mk("soybean_AX_symm", "Soybean", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "xmid"), "Plot", "pdSymm"),
  mk("co2_AL_symm", "CO2", "uptake", "Asym * (1 - exp(-exp(lrc) * (conc - c0)))", c("Asym", "lrc", "c0"), c("Asym", "lrc"), "Plant", "pdSymm", c(Asym = 32, lrc = -4, c0 = 43), "SSasympOff written out; start from Pinheiro & Bates sec. 8.2"),
  mk("co2_AL_diag", "CO2", "uptake", "Asym * (1 - exp(-exp(lrc) * (conc - c0)))", c("Asym", "lrc", "c0"), c("Asym", "lrc"), "Plant", "pdDiag", c(Asym = 32, lrc = -4, c0 = 43)),
  mk("co2_ALC_diag", "CO2", "uptake", "Asym * (1 - exp(-exp(lrc) * (conc - c0)))", c("Asym", "lrc", "c0"), c("Asym", "lrc", "c0"), "Plant", "pdDiag", c(Asym = 32, lrc = -4, c0 = 43)),
  mk("dnase_AX_symm", "DNase", "density", "SSfpl(logconc, A, B, xmid, scal)", c("A", "B", "xmid", "scal"), c("A", "xmid"), "Run", "pdSymm"),
  mk("dnase_ABX_diag", "DNase", "density", "SSfpl(logconc, A, B, xmid, scal)", c("A", "B", "xmid", "scal"), c("A", "B", "xmid"), "Run", "pdDiag"),
  mk("dnase_BX_symm", "DNase", "density", "SSfpl(logconc, A, B, xmid, scal)", c("A", "B", "xmid", "scal"), c("B", "xmid"), "Run", "pdSymm"),
  mk("theoph_KaCl_symm", "Theoph", "conc", "SSfol(Dose, Time, lKe, lKa, lCl)", c("lKe", "lKa", "lCl"), c("lKa", "lCl"), "Subject", "pdSymm"),
  mk("theoph_KaCl_diag", "Theoph", "conc", "SSfol(Dose, Time, lKe, lKa, lCl)", c("lKe", "lKa", "lCl"), c("lKa", "lCl"), "Subject", "pdDiag"),
  mk("theoph_all_symm", "Theoph", "conc", "SSfol(Dose, Time, lKe, lKa, lCl)", c("lKe", "lKa", "lCl"), c("lKe", "lKa", "lCl"), "Subject", "pdSymm"),
  mk("theoph_all_diag", "Theoph", "conc", "SSfol(Dose, Time, lKe, lKa, lCl)", c("lKe", "lKa", "lCl"), c("lKe", "lKa", "lCl"), "Subject", "pdDiag"),
  mk("indometh_all_diag", "Indometh", "conc", "SSbiexp(time, A1, lrc1, A2, lrc2)", c("A1", "lrc1", "A2", "lrc2"), c("A1", "lrc1", "A2", "lrc2"), "Subject", "pdDiag"),
  mk("indometh_3_diag", "Indometh", "conc", "SSbiexp(time, A1, lrc1, A2, lrc2)", c("A1", "lrc1", "A2", "lrc2"), c("A1", "lrc1", "A2"), "Subject", "pdDiag"),
  mk("indometh_3_symm", "Indometh", "conc", "SSbiexp(time, A1, lrc1, A2, lrc2)", c("A1", "lrc1", "A2", "lrc2"), c("A1", "lrc1", "A2"), "Subject", "pdSymm")
)
more <- list(
  mk("orange_AS_symm", "Orange", "circumference", sprintf(logis, "age"), c("Asym", "xmid", "scal"), c("Asym", "scal"), "Tree", "pdSymm"),
  mk("orange_XS_symm", "Orange", "circumference", sprintf(logis, "age"), c("Asym", "xmid", "scal"), c("xmid", "scal"), "Tree", "pdSymm"),
  mk("loblolly_AR_symm", "Loblolly", "height", "SSasymp(age, Asym, R0, lrc)", c("Asym", "R0", "lrc"), c("Asym", "R0"), "Seed", "pdSymm"),
  mk("loblolly_RL_symm", "Loblolly", "height", "SSasymp(age, Asym, R0, lrc)", c("Asym", "R0", "lrc"), c("R0", "lrc"), "Seed", "pdSymm"),
  mk("loblolly_AL_diag", "Loblolly", "height", "SSasymp(age, Asym, R0, lrc)", c("Asym", "R0", "lrc"), c("Asym", "lrc"), "Seed", "pdDiag"),
  mk("chick_A", "ChickWeight", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym"), "Chick", "pdSymm"),
  mk("chick_AX_diag", "ChickWeight", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "xmid"), "Chick", "pdDiag"),
  mk("chick_AS_symm", "ChickWeight", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "scal"), "Chick", "pdSymm"),
  mk("chick_XS_symm", "ChickWeight", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("xmid", "scal"), "Chick", "pdSymm"),
  mk("chick_AX_symm_diet", "ChickWeight", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "xmid"), "Chick", "pdSymm", fixed = c(Asym = "Diet")),
  mk("chick_gompertz_AB_symm", "ChickWeight", "weight", "SSgompertz(Time, Asym, b2, b3)", c("Asym", "b2", "b3"), c("Asym", "b2"), "Chick", "pdSymm"),
  mk("soybean_A", "Soybean", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym"), "Plot", "pdSymm"),
  mk("soybean_AS_symm", "Soybean", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "scal"), "Plot", "pdSymm"),
  mk("soybean_AXS_symm_var", "Soybean", "weight", sprintf(logis, "Time"), c("Asym", "xmid", "scal"), c("Asym", "xmid", "scal"), "Plot", "pdDiag", fixed = c(Asym = "Variety")),
  mk("co2_ALC_symm", "CO2", "uptake", "Asym * (1 - exp(-exp(lrc) * (conc - c0)))", c("Asym", "lrc", "c0"), c("Asym", "lrc", "c0"), "Plant", "pdSymm", c(Asym = 32, lrc = -4, c0 = 43)),
  mk("co2_AC_symm", "CO2", "uptake", "Asym * (1 - exp(-exp(lrc) * (conc - c0)))", c("Asym", "lrc", "c0"), c("Asym", "c0"), "Plant", "pdSymm", c(Asym = 32, lrc = -4, c0 = 43)),
  mk("dnase_all_diag", "DNase", "density", "SSfpl(logconc, A, B, xmid, scal)", c("A", "B", "xmid", "scal"), c("A", "B", "xmid", "scal"), "Run", "pdDiag"),
  mk("dnase_ABX_symm", "DNase", "density", "SSfpl(logconc, A, B, xmid, scal)", c("A", "B", "xmid", "scal"), c("A", "B", "xmid"), "Run", "pdSymm"),
  mk("theoph_KeCl_symm", "Theoph", "conc", "SSfol(Dose, Time, lKe, lKa, lCl)", c("lKe", "lKa", "lCl"), c("lKe", "lCl"), "Subject", "pdSymm"),
  mk("theoph_KaCl_symm_wt", "Theoph", "conc", "SSfol(Dose, Time, lKe, lKa, lCl)", c("lKe", "lKa", "lCl"), c("lKa", "lCl"), "Subject", "pdSymm", fixed = c(lCl = "Wt")),
  mk("indometh_A1L1_symm", "Indometh", "conc", "SSbiexp(time, A1, lrc1, A2, lrc2)", c("A1", "lrc1", "A2", "lrc2"), c("A1", "lrc1"), "Subject", "pdSymm"),
  mk("indometh_A1A2_symm", "Indometh", "conc", "SSbiexp(time, A1, lrc1, A2, lrc2)", c("A1", "lrc1", "A2", "lrc2"), c("A1", "A2"), "Subject", "pdSymm"),
  mk("indometh_all_symm", "Indometh", "conc", "SSbiexp(time, A1, lrc1, A2, lrc2)", c("A1", "lrc1", "A2", "lrc2"), c("A1", "lrc1", "A2", "lrc2"), "Subject", "pdSymm")
)
base <- c(base, more)
cases <- list()
## indometh_all_symm with REML crashes R itself ("double free or corruption") in
## nlme 3.1-162, so it is fitted by ML only.
ml_only <- c("indometh_all_symm")
for (cs in base) for (meth in if (cs$id %in% ml_only) "ML" else c("ML", "REML")) {
  cs2 <- cs; cs2$method <- meth; cs2$id <- paste0(cs$id, "_", tolower(meth))
  cases[[length(cases) + 1]] <- cs2
}

## ---- fitting ----------------------------------------------------------------
pooled_start <- function(cs, d) {
  if (!is.null(cs$start)) return(cs$start)
  f <- as.formula(paste(cs$response, "~", cs$mean))
  getInitial(f, data = d)[cs$params]
}
fit_case <- function(cs, control = nlmeControl()) {
  d <- datasets[[cs$data]]
  d[[cs$group]] <- factor(d[[cs$group]])
  st <- pooled_start(cs, d)
  model <- as.formula(paste(cs$response, "~", cs$mean))
  for (fc in factors[[cs$data]]) d[[fc]] <- factor(d[[fc]])
  rhs <- sapply(cs$params, function(p) if (is.null(cs$fixed[[p]])) "1" else cs$fixed[[p]])
  if (all(rhs == "1")) {
    fixed <- as.formula(paste(paste(cs$params, collapse = " + "), "~ 1"))
    st_full <- st
  } else {  # covariate coefficients start at 0 (bayesmix's rule for start = {param: value})
    fixed <- lapply(cs$params, function(p) as.formula(paste(p, "~", rhs[[p]])))
    st_full <- unlist(lapply(cs$params, function(p) {
      k <- ncol(model.matrix(as.formula(paste("~", rhs[[p]])), d))
      c(st[[p]], rep(0, k - 1)) }))
  }
  rform <- as.formula(paste(paste(cs$random, collapse = " + "), "~ 1"))
  pd <- if (cs$cov == "pdDiag") pdDiag(rform) else pdSymm(rform)
  random <- setNames(list(pd), cs$group)
  r_call <- sprintf("nlme(%s, data = %s, fixed = %s, random = list(%s = %s(%s)), start = c(%s), method = '%s'%s)",
                    deparse(model), cs$data, paste(deparse(fixed), collapse = ""), cs$group, cs$cov, deparse(rform),
                    paste(sprintf("%.17g", st_full), collapse = ", "), cs$method,
                    if (identical(control, nlmeControl())) "" else
                      sprintf(", control = nlmeControl(maxIter = %d, pnlsMaxIter = %d, msMaxIter = %d)",
                              control$maxIter, control$pnlsMaxIter, control$msMaxIter))
  warns <- character(0)
  t0 <- proc.time()[["elapsed"]]
  fit <- tryCatch(withCallingHandlers(
    nlme(model, data = d, fixed = fixed, random = random, start = st_full, method = cs$method,
         control = control),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") }),
    error = function(e) e)
  secs <- proc.time()[["elapsed"]] - t0
  out <- list(case = cs, r_call = r_call, start = as.list(st), start_full = unname(st_full), warnings = I(warns), seconds = secs)
  if (inherits(fit, "error")) { out$error <- conditionMessage(fit); return(out) }
  ll <- logLik(fit)
  re <- as.matrix(fit$modelStruct$reStruct[[1]]) * fit$sigma^2
  sds <- sqrt(diag(re)); cr <- cov2cor(re)
  corr <- structure(list(), names = character(0))
  nm <- rownames(re)
  if (length(nm) > 1) for (i in seq_along(nm)) for (j in seq_along(nm)) if (i < j)
    corr[[paste(nm[i], nm[j], sep = ":")]] <- cr[i, j]
  tt <- summary(fit)$tTable
  out$nlme <- list(logLik = as.numeric(ll), df = attr(ll, "df"), AIC = AIC(fit), BIC = BIC(fit),
                   fixef = as.list(fixef(fit)), se = as.list(setNames(tt[, "Std.Error"], rownames(tt))),
                   sigma = fit$sigma, re_sd = as.list(sds), re_corr = corr,
                   num_iter = fit$numIter, n_obs = nrow(d), n_groups = nlevels(d[[cs$group]]))
  out
}
results <- list()
for (cs in cases) {
  res <- fit_case(cs)
  if (!is.null(res$error)) {  # nlme's defaults failed: retry with more iterations
    res2 <- fit_case(cs, nlmeControl(maxIter = 500, pnlsMaxIter = 20, msMaxIter = 500))
    res2$default_control_error <- res$error
    res <- res2
  }
  cat(sprintf("%-28s %s\n", cs$id, if (is.null(res$error)) sprintf("%.6f", res$nlme$logLik) else paste("ERROR", res$error)))
  results[[cs$id]] <- res
}
write_json(list(versions = versions, cases = cases), file.path(out_dir, "cases.json"),
           digits = NA, auto_unbox = TRUE, pretty = TRUE)
write_json(list(versions = versions, results = results), file.path(out_dir, "nlme_all.json"),
           digits = NA, auto_unbox = TRUE, pretty = TRUE)
