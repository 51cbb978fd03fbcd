# Helpers shared by make_varcorr_refs.R and check_varcorr_refs.R.
#
# Data are read back from data/<name>.csv with factor levels / order restored
# from data/<name>.levels.json (same layout as ../glmm and
# ../../../../shared/refs/round2), a model call given as text is evaluated in
# an environment holding that data (so a JSON's `call` is exactly what ran),
# and a fitted nlme object (lme, gls, nlme) is extracted into a plain list.
#
# Written for R 4.2.2, nlme 3.1-162, jsonlite 1.8.4.

suppressPackageStartupMessages({
  library(nlme)
  library(jsonlite)
})

# --------------------------------------------------------------------------
# JSON helpers (as in ../glmm/glmm_ref_utils.R)
# --------------------------------------------------------------------------

nlist <- function(x) {
  if (is.null(x)) return(NULL)
  out <- as.list(unname(x))
  names(out) <- names(x)
  out
}
arr <- function(x) I(if (is.null(x)) character(0) else unname(x))
mat_to_list <- function(m) {
  m <- as.matrix(m)
  rn <- rownames(m); cn <- colnames(m)
  out <- lapply(seq_len(nrow(m)), function(i) nlist(setNames(m[i, ], cn)))
  names(out) <- rn
  out
}
write_ref_json <- function(x, path) {
  jsonlite::write_json(x, path, digits = NA, auto_unbox = TRUE,
                       pretty = TRUE, null = "null", na = "null")
}

versions_block <- function() {
  pk <- c("nlme", "jsonlite", "stats")
  pv <- sapply(pk, function(p) as.character(packageVersion(p)))
  si <- sessionInfo()
  list(R = R.version.string, platform = R.version$platform,
       packages = nlist(pv), BLAS = si$BLAS, LAPACK = si$LAPACK,
       contrasts_option = nlist(options("contrasts")$contrasts),
       RNGkind = arr(RNGkind()))
}

# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

factors_block <- function(df) {
  fc <- names(df)[vapply(df, is.factor, logical(1))]
  out <- lapply(fc, function(v) list(levels = arr(levels(df[[v]])),
                                     ordered = is.ordered(df[[v]])))
  names(out) <- fc
  out
}

write_dataset <- function(df, name, dir, source, note = NULL) {
  df <- as.data.frame(df)
  attr(df, "formula") <- NULL
  csv <- file.path(dir, paste0(name, ".csv"))
  lev <- file.path(dir, paste0(name, ".levels.json"))
  utils::write.csv(df, csv, row.names = FALSE)
  cls <- vapply(df, function(x) class(x)[1], character(1))
  cls[vapply(df, is.factor, logical(1))] <- "factor"
  cls[vapply(df, is.ordered, logical(1))] <- "ordered"
  write_ref_json(list(dataset = name, source = source, nrow = nrow(df),
                      ncol = ncol(df), column_class = nlist(cls),
                      factors = factors_block(df), na_string = "NA",
                      note = note), lev)
  invisible(csv)
}

read_dataset <- function(name, dir) {
  lev <- jsonlite::fromJSON(file.path(dir, paste0(name, ".levels.json")),
                            simplifyVector = TRUE)
  df <- utils::read.csv(file.path(dir, paste0(name, ".csv")),
                        stringsAsFactors = FALSE, check.names = FALSE)
  for (v in names(lev$factors)) {
    f <- lev$factors[[v]]
    df[[v]] <- factor(as.character(df[[v]]), levels = f$levels,
                      ordered = isTRUE(f$ordered))
  }
  df
}

# --------------------------------------------------------------------------
# Optimiser log: every nlminb()/optim() call made from inside nlme is traced
# (exit hook), so iterations / convergence codes are recorded without
# changing the call text. lme() and gls() call nlminb once per outer
# iteration (more than once only when the variance function depends on the
# fitted values, e.g. varPower() with its default form ~ fitted(.));
# nlme() calls it once per PNLS/LME alternation.
# --------------------------------------------------------------------------

.optlog <- new.env()
.optlog$calls <- list()

install_opt_trace <- function() {
  suppressMessages({
    trace("nlminb", print = FALSE, where = asNamespace("nlme"), exit = quote({
      .r <- returnValue()
      .e <- get(".optlog", envir = globalenv())
      .e$calls[[length(.e$calls) + 1]] <- list(
        optimizer = "nlminb", convergence = .r$convergence,
        message = .r$message, iterations = .r$iterations,
        evaluations = nlist(.r$evaluations), objective = .r$objective)
    }))
    trace("optim", print = FALSE, where = asNamespace("nlme"), exit = quote({
      .r <- returnValue()
      .e <- get(".optlog", envir = globalenv())
      .e$calls[[length(.e$calls) + 1]] <- list(
        optimizer = "optim", convergence = .r$convergence,
        message = .r$message, iterations = NULL,
        evaluations = nlist(.r$counts), objective = .r$value)
    }))
  })
  invisible(TRUE)
}
remove_opt_trace <- function() {
  suppressMessages({
    untrace("nlminb", where = asNamespace("nlme"))
    untrace("optim", where = asNamespace("nlme"))
  })
}

# --------------------------------------------------------------------------
# Running a call given as text
# --------------------------------------------------------------------------

run_call <- function(call_text, data_list) {
  env <- list2env(data_list, parent = globalenv())
  warns <- character(0); msgs <- character(0); err <- NULL; fit <- NULL
  .optlog$calls <- list()
  tm <- system.time(
    fit <- tryCatch(
      withCallingHandlers(eval(parse(text = call_text)[[1]], envir = env),
        warning = function(w) {
          warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning")
        },
        message = function(m) {
          msgs <<- c(msgs, trimws(conditionMessage(m)))
          invokeRestart("muffleMessage")
        }),
      error = function(e) { err <<- conditionMessage(e); NULL })
  )
  list(fit = fit, elapsed = unname(tm[["elapsed"]]), warnings = unique(warns),
       messages = unique(msgs), error = err, opt_calls = .optlog$calls,
       env = env)
}

# Median elapsed time over `reps` further evaluations (optimiser trace off).
bench_call <- function(call_text, data_list, reps = 5) {
  env <- list2env(data_list, parent = globalenv())
  ex <- parse(text = call_text)[[1]]
  t <- vapply(seq_len(reps), function(i)
    unname(system.time(suppressWarnings(eval(ex, envir = env)))[["elapsed"]]),
    numeric(1))
  list(reps = reps, median_s = median(t), min_s = min(t), all_s = arr(t))
}

# --------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------

# Random effects at full precision (nlme's VarCorr() returns a rounded
# character matrix): absolute covariance = sigma^2 * relative Psi.
random_block <- function(fit) {
  rs <- fit$modelStruct$reStruct
  if (is.null(rs)) return(NULL)
  out <- lapply(names(rs), function(g) {
    Psi <- as.matrix(rs[[g]]) * fit$sigma^2
    sds <- sqrt(diag(Psi))
    cr <- if (length(sds) > 1) cov2cor(Psi) else NULL
    pairs <- list()
    if (length(sds) > 1 && !inherits(rs[[g]], "pdDiag"))
      for (j in 1:(length(sds) - 1)) for (k in (j + 1):length(sds))
        pairs[[length(pairs) + 1]] <- list(var1 = names(sds)[j],
                                           var2 = names(sds)[k],
                                           corr = cr[j, k])
    list(pdClass = class(rs[[g]])[1], sd = nlist(sds), corr = I(pairs),
         cov = mat_to_list(Psi))
  })
  names(out) <- names(rs)
  out
}

varcorr_printed <- function(fit) {
  vc <- tryCatch(VarCorr(fit), error = function(e) NULL)
  if (is.null(vc)) return(NULL)
  list(rownames = arr(rownames(vc)), colnames = arr(colnames(vc)),
       cells = lapply(seq_len(ncol(vc)), function(j) arr(unname(vc[, j]))))
}

var_note <- function(cls) {
  switch(cls,
    varIdent = "SD(level) = sigma * coef[level]; the first level in the stratum order is the reference with coef = 1 (coef_all); coef_unconstrained = log of the non-reference ratios",
    varPower = "SD = sigma * |v|^power, v = the form covariate (default fitted(.)); coef_unconstrained = power (unconstrained)",
    varExp = "SD = sigma * exp(expon * v), v = the form covariate (default fitted(.))",
    varConstPower = "SD = sigma * (const + |v|^power); const > 0 (coef_unconstrained: log(const), power)",
    varFixed = "SD = sigma * sqrt(v) (weights = 1/v on the variance scale); no estimated parameters",
    varComb = "product of the component variance functions' SD multipliers; coef names are prefixed A. / B. by component",
    "see ?varClasses")
}

var_block <- function(vs) {
  if (is.null(vs)) return(NULL)
  cls <- class(vs)[1]
  fml <- tryCatch(deparse1(formula(vs)), error = function(e) NA_character_)
  cf <- tryCatch(coef(vs, unconstrained = FALSE), error = function(e) NULL)
  cfu <- tryCatch(coef(vs, unconstrained = TRUE), error = function(e) NULL)
  out <- list(class = cls, formula = fml,
              coef = if (length(cf)) nlist(cf) else NULL,
              coef_unconstrained = if (length(cfu)) nlist(cfu) else NULL)
  if (cls == "varIdent")
    out$coef_all <- nlist(coef(vs, unconstrained = FALSE, allCoef = TRUE))
  if (cls == "varComb") {
    out$components <- lapply(vs, function(v) var_block(v))
    out$formula <- NULL
  }
  fx <- attr(vs, "fixed")
  if (length(fx)) out$fixed <- nlist(unlist(fx))
  w <- tryCatch(varWeights(vs), error = function(e) NULL)
  if (!is.null(w)) out$sum_log_varWeights <- sum(log(w))
  out$note <- var_note(cls)
  out
}

cor_note <- function(cls) {
  switch(cls,
    corAR1 = "Phi: correlation between successive observations (lag 1 in row order within group, or in integer form-covariate steps); cor(lag k) = Phi^k",
    corARMA = "Phi1..Phip: AR coefficients, Theta1..Thetaq: MA coefficients of a stationary ARMA(p, q) on the within-group position",
    corCAR1 = "Phi: correlation at unit distance of the continuous covariate; cor(s) = Phi^s",
    corCompSymm = "Rho: common within-group correlation",
    corSymm = "unstructured: cor(i,j) for the positions i < j given by the covariate (default 1:n within group); coef lists the lower triangle column by column",
    corExp = "range d and, with nugget = TRUE, nugget c0: cor(s) = (1 - c0) * exp(-s/d) for s > 0 (1 at s = 0)",
    corGaus = "range d and, with nugget = TRUE, nugget c0: cor(s) = (1 - c0) * exp(-(s/d)^2) for s > 0",
    corSpher = "range d (and nugget): cor(s) = (1 - c0) * (1 - 1.5 s/d + 0.5 (s/d)^3) for s < d, 0 beyond",
    "see ?corClasses")
}

cor_block <- function(cs) {
  if (is.null(cs)) return(NULL)
  cls <- class(cs)[1]
  cf <- coef(cs, unconstrained = FALSE)
  cfu <- coef(cs, unconstrained = TRUE)
  out <- list(class = cls,
              formula = deparse1(formula(cs)),
              coef = nlist(cf), coef_unconstrained = nlist(cfu))
  if (!is.null(attr(cs, "nugget"))) out$nugget <- isTRUE(attr(cs, "nugget"))
  if (!is.null(attr(cs, "metric"))) out$metric <- attr(cs, "metric")
  if (!is.null(attr(cs, "p"))) { out$p <- attr(cs, "p"); out$q <- attr(cs, "q") }
  cm <- tryCatch(corMatrix(cs), error = function(e) NULL)
  if (!is.null(cm)) {
    if (!is.list(cm)) cm <- list(cm)
    sizes <- vapply(cm, NROW, integer(1))
    i <- which.max(sizes)
    out$corMatrix_largest_group <- if (sizes[i] <= 16)
      list(group = names(cm)[i], n = sizes[i], matrix = unname(cm[[i]])) else
      list(group = names(cm)[i], n = sizes[i],
           first_row_first_10 = arr(unname(cm[[i]][1, 1:min(10, sizes[i])])))
  }
  out$note <- cor_note(cls)
  out
}

extract_nlme_fit <- function(fit, engine) {
  ll <- logLik(fit)
  s <- summary(fit)
  tt <- s$tTable
  reml <- fit$method == "REML"
  N <- fit$dims$N
  fe <- if (engine == "nlme::gls") coef(fit) else fixef(fit)
  p <- length(fe)
  vc <- as.matrix(vcov(fit))
  ms <- fit$modelStruct
  ngrps <- if (engine == "nlme::gls") NULL else {
    g <- fit$dims$ngrps
    nlist(g[seq_len(fit$dims$Q)])
  }
  apv <- fit$apVar
  out <- list(
    method = fit$method,
    nobs = nobs(fit),
    N = N, p = p,
    ngrps = ngrps,
    df = attr(ll, "df"),
    logLik = as.numeric(ll),
    AIC = AIC(fit),
    BIC = BIC(fit),
    BIC_rule = if (reml) "-2*logLik + df*log(N - p)  (nlme, REML)" else
      "-2*logLik + df*log(N)  (nlme, ML)",
    minus2logLik = -2 * as.numeric(ll),
    fixef = nlist(fe),
    fixef_se = nlist(tt[, "Std.Error"]),
    coef_table = {
      r <- lapply(seq_len(nrow(tt)), function(i) {
        x <- list(estimate = tt[i, "Value"], se = tt[i, "Std.Error"])
        if ("DF" %in% colnames(tt)) x$df <- tt[i, "DF"]
        x$t <- tt[i, "t-value"]; x$p <- tt[i, "p-value"]; x
      })
      names(r) <- rownames(tt); r
    },
    se_note = "fixef_se = summary()$tTable Std.Error; fixef_se_vcov = sqrt(diag(vcov(fit))); se_ratio_tTable_over_vcov = their ratio (sqrt(N/(N-p)) for ML lme/nlme fits via summary's adjustSigma = TRUE; 1 for REML)",
    se_ratio_tTable_over_vcov = unname(tt[1, "Std.Error"] / sqrt(vc[1, 1])),
    fixef_se_vcov = nlist(sqrt(diag(vc))),
    vcov_fixef = mat_to_list(vc),
    sigma = fit$sigma,
    sigma_note = "residual SD scale: with a varStruct the SD of observation i is sigma * (SD multiplier of i), e.g. sigma is the reference-level SD for varIdent",
    random = random_block(fit),
    varcorr_printed = varcorr_printed(fit),
    varStruct = var_block(ms$varStruct),
    corStruct = cor_block(ms$corStruct),
    apVar = if (is.character(apv)) apv else "ok",
    apVar_Pars = if (!is.character(apv) && !is.null(attr(apv, "Pars"))) nlist(attr(apv, "Pars")) else NULL,
    numIter = fit$numIter,
    contrasts = fit$contrasts
  )
  iv <- tryCatch(suppressWarnings(intervals(fit, which = "var-cov")),
                 error = function(e) conditionMessage(e))
  if (is.character(iv)) out$intervals_var_cov <- list(error = iv) else {
    ivl <- list()
    for (nm in setdiff(names(iv), "fixed")) {
      x <- iv[[nm]]
      if (is.list(x) && !is.matrix(x) && !is.data.frame(x)) {
        ivl[[nm]] <- lapply(x, function(m) {
          m <- as.matrix(m)
          r <- lapply(seq_len(nrow(m)), function(i) nlist(m[i, ])); names(r) <- rownames(m); r })
      } else if (is.matrix(x) || is.data.frame(x)) {
        m <- as.matrix(x)
        r <- lapply(seq_len(nrow(m)), function(i) nlist(m[i, ])); names(r) <- rownames(m)
        ivl[[nm]] <- r
      } else if (is.numeric(x)) ivl[[nm]] <- nlist(x)
    }
    ivl$level <- 0.95
    out$intervals_var_cov <- ivl
  }
  out
}

engine_of <- function(call_text) {
  if (grepl("^lme\\(", call_text)) "nlme::lme" else
  if (grepl("^gls\\(", call_text)) "nlme::gls" else
  if (grepl("^nlme\\(", call_text)) "nlme::nlme" else NA_character_
}

# spec: list(case, description, call, data_name, data, dataset (list: file,
# levels_file, source), notes)
make_case <- function(spec, outdir, bench_reps = 5) {
  dl <- setNames(list(spec$data), spec$data_name)
  engine <- engine_of(spec$call)
  run <- run_call(spec$call, dl)
  status <- if (!is.null(run$error)) "error" else if (length(run$warnings)) "warning" else "ok"
  base <- list(
    case = spec$case, description = spec$description, engine = engine,
    versions = versions_block(),
    dataset = c(list(name = spec$data_name), spec$dataset,
                list(nrow = nrow(spec$data))),
    call = spec$call, status = status,
    warnings = arr(run$warnings), messages = arr(run$messages),
    error = run$error)
  body <- list()
  if (is.null(run$error)) {
    fit <- run$fit
    body <- tryCatch(extract_nlme_fit(fit, engine),
                     error = function(e) list(extraction_error = conditionMessage(e)))
    oc <- run$opt_calls
    last <- if (length(oc)) oc[[length(oc)]] else NULL
    body$convergence <- list(
      converged = is.null(run$error) && (is.null(last) || last$convergence == 0),
      rule = "converged = the fit returned without error (nlme stops with an error on non-convergence unless returnObject = TRUE) and the last optimiser call reported code 0",
      numIter = fit$numIter,
      numIter_note = "nlme's numIter: outer iterations (lme/gls: only stored when the varStruct/corStruct needs updating with the fitted values; otherwise null); nlme(): PNLS/LME alternations",
      n_optimizer_calls = length(oc),
      optimizer_iterations_total = sum(vapply(oc, function(x) if (is.null(x$iterations)) NA_real_ else as.numeric(x$iterations), numeric(1))),
      optimizer_calls = I(oc))
    body$dataset_all_rows_used <- isTRUE(body$nobs == nrow(spec$data))
    body$elapsed_s <- run$elapsed
    body$elapsed_bench <- c(bench_call(spec$call, dl, reps = bench_reps),
      list(note = "elapsed_s: first (traced) evaluation; elapsed_bench: median/min of repeated evaluations without the optimiser trace, same session"))
  }
  body$factors <- factors_block(spec$data)
  out <- c(base, body, if (!is.null(spec$notes)) list(notes = spec$notes))
  write_ref_json(out, file.path(outdir, paste0(spec$case, ".json")))
  cat(sprintf("%-44s %-7s logLik=%-20s conv=%s (%.3fs) %s\n", spec$case, status,
              if (is.null(out$logLik)) "NA" else format(out$logLik, digits = 15),
              if (is.null(out$convergence)) "NA" else out$convergence$converged,
              run$elapsed,
              paste(c(if (length(run$warnings)) paste("W:", paste(run$warnings, collapse = " ; ")),
                      if (!is.null(run$error)) paste("E:", run$error)), collapse = " ")))
  invisible(list(fit = run$fit, out = out))
}
