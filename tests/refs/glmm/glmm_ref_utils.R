# Helpers shared by make_glmm_refs.R and check_round2_refs.R.
#
# They read the reference CSVs back with R's factor levels restored, run a
# model call given as text (so the JSON's `call` field is exactly what was
# evaluated), capture warnings/messages/elapsed time, and extract a fitted
# lme4 (glmerMod) or glmmTMB model into a plain list in the JSON layout of
# ../shared/refs/round2/README.md.
#
# Written for R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5, jsonlite 1.8.4.

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

# --------------------------------------------------------------------------
# Small JSON helpers
# --------------------------------------------------------------------------

# Named numeric vector -> JSON object (jsonlite would otherwise drop names).
nlist <- function(x) {
  if (is.null(x)) return(NULL)
  out <- as.list(unname(x))
  names(out) <- names(x)
  out
}

# Vector that must stay a JSON array even with length 0 or 1 under auto_unbox.
arr <- function(x) I(if (is.null(x)) character(0) else unname(x))

# Square matrix with dimnames -> {row: {col: value}}.
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
  pk <- c("lme4", "glmmTMB", "TMB", "nlme", "Matrix", "MASS", "minqa",
          "nloptr", "jsonlite")
  pv <- sapply(pk, function(p) tryCatch(as.character(packageVersion(p)),
                                        error = function(e) NA_character_))
  si <- sessionInfo()
  list(R = R.version.string,
       platform = R.version$platform,
       packages = nlist(pv),
       BLAS = si$BLAS, LAPACK = si$LAPACK,
       contrasts_option = nlist(options("contrasts")$contrasts),
       RNGkind = arr(RNGkind()))
}

# --------------------------------------------------------------------------
# Data: write / read CSV + <name>.levels.json (same layout as round2)
# --------------------------------------------------------------------------

factors_block <- function(df) {
  fc <- names(df)[vapply(df, is.factor, logical(1))]
  out <- lapply(fc, function(v) list(levels = arr(levels(df[[v]])),
                                     ordered = is.ordered(df[[v]])))
  names(out) <- fc
  out
}

write_dataset <- function(df, name, dir, source, note = NULL) {
  csv <- file.path(dir, paste0(name, ".csv"))
  lev <- file.path(dir, paste0(name, ".levels.json"))
  utils::write.csv(df, csv, row.names = FALSE)
  cls <- vapply(df, function(x) class(x)[length(class(x))], character(1))
  cls[vapply(df, is.factor, logical(1))] <- "factor"
  write_ref_json(list(dataset = name, source = source, nrow = nrow(df),
                      ncol = ncol(df), column_class = nlist(cls),
                      factors = factors_block(df), na_string = "NA",
                      note = note), lev)
  invisible(csv)
}

# Read <name>.csv and restore factor columns (level order, ordered flag)
# from <name>.levels.json.
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
# Running a call given as text
# --------------------------------------------------------------------------

# Evaluate `call_text` in an environment holding `data_list` (name -> data
# frame). Warnings and messages are recorded (and muffled); errors are caught.
run_call <- function(call_text, data_list) {
  env <- list2env(data_list, parent = globalenv())
  warns <- character(0); msgs <- character(0); err <- NULL; fit <- NULL
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
  list(fit = fit, elapsed = unname(tm[["elapsed"]]), warnings = warns,
       messages = msgs, error = err)
}

# --------------------------------------------------------------------------
# Saturated log-likelihood: sum over rows of log p(y | mu = y) for the family
# (binomial: with the trial counts = prior weights when the response is a
# proportion; Gamma: at the fitted shape; NB: at the fitted theta).
# --------------------------------------------------------------------------

loglik_saturated <- function(family, y, wt, shape = NULL, nb_theta = NULL) {
  if (family == "binomial") {
    # y is the proportion, wt the number of trials (1 for binary data)
    k <- round(y * wt)
    return(sum(dbinom(k, round(wt), y, log = TRUE)))
  }
  if (family == "poisson") return(sum(wt * dpois(y, y, log = TRUE)))
  if (family == "Gamma" && !is.null(shape))
    return(sum(wt * dgamma(y, shape = shape, scale = y / shape, log = TRUE)))
  if (grepl("^Negative Binomial", family) && !is.null(nb_theta))
    return(sum(wt * dnbinom(y, size = nb_theta, mu = y, log = TRUE)))
  NA_real_
}

# --------------------------------------------------------------------------
# Extraction: lme4 glmerMod
# --------------------------------------------------------------------------

random_block_merMod <- function(fit) {
  vc <- VarCorr(fit)
  out <- lapply(names(vc), function(g) {
    m <- vc[[g]]
    sds <- attr(m, "stddev")
    cr <- attr(m, "correlation")
    pairs <- list()
    if (length(sds) > 1) {
      for (j in 1:(length(sds) - 1)) for (k in (j + 1):length(sds))
        pairs[[length(pairs) + 1]] <- list(var1 = names(sds)[j],
                                           var2 = names(sds)[k],
                                           corr = cr[j, k])
    }
    list(sd = nlist(sds), corr = I(pairs), cov = mat_to_list(unclass(m)[, , drop = FALSE]))
  })
  names(out) <- names(vc)
  out
}

ranef_block_merMod <- function(fit) {
  re <- ranef(fit, condVar = TRUE)
  out <- lapply(names(re), function(g) {
    d <- re[[g]]
    pv <- attr(d, "postVar")       # k x k x nlevels
    k <- ncol(d)
    condsd <- lapply(seq_len(k), function(j) arr(sqrt(pv[j, j, ])))
    names(condsd) <- colnames(d)
    mode <- lapply(colnames(d), function(j) arr(d[[j]]))
    names(mode) <- colnames(d)
    res <- list(group = g, levels = arr(rownames(d)), mode = mode,
                condsd = condsd)
    if (k > 1) {
      # conditional correlation between terms within each level
      cc <- list()
      for (j in 1:(k - 1)) for (l in (j + 1):k)
        cc[[length(cc) + 1]] <- list(
          var1 = colnames(d)[j], var2 = colnames(d)[l],
          condcov = arr(pv[j, l, ]))
      res$condcov_offdiag <- I(cc)
    }
    res
  })
  names(out) <- names(re)
  out
}

extract_glmer <- function(fit, run, extra = list()) {
  fam <- family(fit)
  famname <- fam$family
  is_nb <- grepl("^Negative Binomial", famname)
  ll <- logLik(fit)
  nagq <- fit@devcomp$dims[["nAGQ"]]
  cmp <- fit@devcomp$cmp
  y <- getME(fit, "y")
  wt <- weights(fit, type = "prior")
  mu <- fitted(fit)
  dr <- residuals(fit, type = "deviance")
  nb_theta <- if (is_nb) getME(fit, "glmer.nb.theta") else NULL
  # lme4's sigma() for Gamma is devcomp sigmaML = sqrt(pwrss / n). The
  # Laplace objective does NOT use it: Gamma()$aic plugs in the dispersion
  # sum(devres^2) / sum(wt) (at the conditional mode) and adds 2.
  sig <- if (famname %in% c("binomial", "poisson") || is_nb) NULL else sigma(fit)
  shape_aic <- if (famname == "Gamma") sum(wt) / sum(dr^2) else NULL
  sat <- loglik_saturated(famname, y, wt, shape = shape_aic, nb_theta = nb_theta)
  # lme4's objective on the deviance-residual scale: ldL2 + sum(devres^2) + ||u||^2
  u <- getME(fit, "u")
  # (for nAGQ > 1 lme4's objective itself is on this scale: cmp["dev"])
  obj_devres <- if (nagq > 1) unname(cmp[["dev"]]) else unname(cmp[["ldL2"]] + sum(dr^2) + sum(u^2))
  # Laplace objective rebuilt from its parts: ldL2 + ||u||^2 + family$aic(...)
  # (for binomial/poisson family$aic = -2 sum log p(y|mu); lme4's -2logLik)
  aic_term <- fam$aic(y, NULL, mu, wt, sum(dr^2))
  vc_h <- as.matrix(vcov(fit))
  vc_rx <- tryCatch(suppressWarnings(as.matrix(vcov(fit, use.hessian = FALSE))),
                    error = function(e) NULL)
  optinfo <- fit@optinfo
  conv <- list(optimizer = optinfo$optimizer,
               opt_code = optinfo$conv$opt,
               opt_message = optinfo$message,
               lme4_code = optinfo$conv$lme4$code,
               lme4_messages = if (is.null(optinfo$conv$lme4$messages)) NULL
                               else arr(optinfo$conv$lme4$messages),
               optinfo_warnings = if (length(optinfo$warnings))
                                    arr(unlist(optinfo$warnings)) else NULL,
               feval = optinfo$feval)
  X <- getME(fit, "X")
  out <- list(
    engine = if (is_nb) "lme4::glmer.nb" else "lme4::glmer",
    family = if (is_nb) "negative.binomial (NB2)" else famname,
    family_lme4 = famname,
    link = fam$link,
    method = if (nagq == 0) "nAGQ = 0 (PIRLS for beta and u jointly; Laplace over theta only)"
             else if (nagq == 1) "Laplace" else sprintf("AGQ (nAGQ = %d)", nagq),
    nAGQ = nagq,
    nobs = nobs(fit),
    ngrps = nlist(ngrps(fit)),
    df = attr(ll, "df"),
    df_resid = df.residual(fit),
    logLik = as.numeric(ll),
    AIC = AIC(fit), BIC = BIC(fit),
    deviance = deviance(fit),
    deviance_note = "deviance() of a glmerMod is the sum of squared deviance residuals (conditional); minus2logLik is -2*logLik (the 'deviance' column of summary())",
    minus2logLik = -2 * as.numeric(ll),
    fixef = nlist(fixef(fit)),
    fixef_se = nlist(sqrt(diag(vc_h))),
    vcov_fixef = mat_to_list(vc_h),
    vcov_note = "vcov() default: for glmer fits with a finite-difference Hessian (nAGQ >= 1) lme4 uses the inverse Hessian of the deviance in (theta, beta), block for beta; fixef_se_RX/vcov_fixef_RX use the RX factor (use.hessian = FALSE)",
    fixef_se_RX = if (!is.null(vc_rx)) nlist(sqrt(diag(vc_rx))) else NULL,
    vcov_fixef_RX = if (!is.null(vc_rx)) mat_to_list(vc_rx) else NULL,
    random = random_block_merMod(fit),
    varcorr_table = as.data.frame(VarCorr(fit)),
    theta = nlist(getME(fit, "theta")),
    sigma = sig,
    sigma_note = if (is.null(sig)) "no scale parameter for this family (sigma fixed at 1)"
                 else "lme4 sigma() = devcomp sigmaML = sqrt(pwrss / n), pwrss = sum of squared weighted Pearson residuals + ||u||^2 at the mode; not the dispersion used in logLik (see gamma_lme4)",
    isSingular = isSingular(fit),
    convergence = conv,
    devcomp_cmp = nlist(cmp),
    contrasts = attr(X, "contrasts"),
    logLik_saturated = sat,
    objective_devresid_scale = obj_devres,
    laplace_parts = list(ldL2 = unname(cmp[["ldL2"]]), ussq = sum(u^2),
                         family_aic_at_mode = aic_term,
                         ldL2_plus_ussq_plus_aic = unname(cmp[["ldL2"]]) + sum(u^2) + aic_term)
  )
  if (nagq > 1) out$laplace_parts <- NULL
  if (famname == "Gamma") {
    out$gamma_lme4 <- list(
      dispersion_in_logLik = 1 / shape_aic, shape_in_logLik = shape_aic,
      sigmaML = sig,
      note = paste("lme4 Gamma Laplace: -2 logLik = ldL2 + ||u||^2 + Gamma()$aic, where Gamma()$aic =",
                   "-2 sum log dgamma(y; shape = n / sum(devres^2), mean = mu at the mode) + 2;",
                   "i.e. the shape is a plug-in (deviance / n) estimate, not a maximum-likelihood parameter,",
                   "and the +2 is glm's AIC parameter count. Equivalently -2 logLik = ldL2 + ||u||^2 + n - 2 logLik_saturated + 2",
                   "with logLik_saturated at that shape. glmmTMB's Gamma logLik is the proper Laplace marginal likelihood",
                   "with the shape estimated by ML, so the two engines' logLik values are not comparable."))
  }
  if (is_nb) {
    out$nb_theta <- nb_theta
    out$nb_note <- "glmer.nb: theta optimised by an outer 1-d search, the GLMM refitted at fixed theta; df counts theta"
  }
  if (nagq > 1) {
    out$logLik_plus_saturated <- out$logLik + sat
    out$AGQ_note <- "lme4 computes the nAGQ > 1 objective from deviance residuals, so logLik/AIC/BIC omit the saturated log-likelihood (logLik_saturated). logLik_plus_saturated = logLik + logLik_saturated is on the full likelihood scale."
  } else {
    out$Laplace_note <- "objective_devresid_scale = ldL2 + sum(devresid^2) + ||u||^2; for binomial/poisson minus2logLik = objective_devresid_scale - 2*logLik_saturated = ldL2 + ||u||^2 - 2 sum log p(y|mu at the mode)"
  }
  out$ranef <- ranef_block_merMod(fit)
  modifyList(out, extra)
}

# --------------------------------------------------------------------------
# Extraction: glmmTMB
# --------------------------------------------------------------------------

random_block_tmb <- function(vc) {
  if (is.null(vc) || !length(vc)) return(NULL)
  out <- lapply(names(vc), function(g) {
    m <- vc[[g]]
    sds <- attr(m, "stddev")
    cr <- attr(m, "correlation")
    pairs <- list()
    if (length(sds) > 1) {
      for (j in 1:(length(sds) - 1)) for (k in (j + 1):length(sds))
        pairs[[length(pairs) + 1]] <- list(var1 = names(sds)[j],
                                           var2 = names(sds)[k],
                                           corr = cr[j, k])
    }
    list(sd = nlist(sds), corr = I(pairs),
         cov = mat_to_list(matrix(unclass(m), nrow(m), dimnames = dimnames(m))))
  })
  names(out) <- names(vc)
  out
}

ranef_block_tmb <- function(fit) {
  re <- ranef(fit, condVar = TRUE)$cond
  out <- lapply(names(re), function(g) {
    d <- re[[g]]
    cv <- attr(d, "condVar")
    k <- ncol(d)
    if (is.null(dim(cv))) cv <- array(cv, c(1, 1, length(cv)))
    condsd <- lapply(seq_len(k), function(j) arr(sqrt(cv[j, j, ])))
    names(condsd) <- colnames(d)
    mode <- lapply(colnames(d), function(j) arr(d[[j]]))
    names(mode) <- colnames(d)
    res <- list(group = g, levels = arr(rownames(d)), mode = mode, condsd = condsd)
    # glmmTMB 1.1.5 fills only the diagonal of condVar (off-diagonals NA)
    if (k > 1 && !all(is.na(cv[1, 2, ]))) {
      cc <- list()
      for (j in 1:(k - 1)) for (l in (j + 1):k)
        cc[[length(cc) + 1]] <- list(
          var1 = colnames(d)[j], var2 = colnames(d)[l],
          condcov = arr(cv[j, l, ]))
      res$condcov_offdiag <- I(cc)
    }
    res
  })
  names(out) <- names(re)
  out
}

extract_glmmTMB <- function(fit, run, extra = list()) {
  fam <- family(fit)
  ll <- logLik(fit)
  vc <- vcov(fit)
  fe <- fixef(fit)
  par <- fit$fit$par
  famname <- fam$family
  sig <- sigma(fit)
  sigma_note <- switch(famname,
    nbinom2 = "sigma(fit) is the NB2 size/shape theta: Var = mu + mu^2/theta",
    Gamma = "sigma(fit) = 1/sqrt(shape) (coefficient of variation); shape = 1/sigma^2",
    poisson = "no dispersion (1)", binomial = "no dispersion (1)",
    "see glmmTMB ?sigma.glmmTMB")
  gr <- tryCatch(max(abs(fit$sdr$gradient.fixed)), error = function(e) NA)
  X <- getME(fit, "X")
  out <- list(
    engine = "glmmTMB::glmmTMB",
    family = famname, link = fam$link,
    method = "ML (Laplace)",
    nobs = nobs(fit),
    ngrps = nlist(vapply(fit$modelInfo$reTrms$cond$flist, nlevels, integer(1))),
    df = attr(ll, "df"),
    df_resid = df.residual(fit),
    logLik = as.numeric(ll),
    AIC = AIC(fit), BIC = BIC(fit),
    deviance = -2 * as.numeric(ll),
    deviance_note = "glmmTMB: deviance reported as -2*logLik (the 'deviance' column of summary())",
    minus2logLik = -2 * as.numeric(ll),
    fixef = nlist(fe$cond),
    fixef_se = nlist(sqrt(diag(vc$cond))),
    vcov_fixef = mat_to_list(vc$cond),
    zi_fixef = if (length(fe$zi)) nlist(fe$zi) else NULL,
    zi_fixef_se = if (length(fe$zi)) nlist(sqrt(diag(vc$zi))) else NULL,
    vcov_zi_fixef = if (length(fe$zi)) mat_to_list(vc$zi) else NULL,
    disp_fixef = if (length(fe$disp)) nlist(fe$disp) else NULL,
    random = random_block_tmb(VarCorr(fit)$cond),
    sigma = sig, sigma_note = sigma_note,
    betad = if ("betad" %in% names(par)) unname(par[names(par) == "betad"]) else NULL,
    theta_internal = arr(unname(par[names(par) == "theta"])),
    theta_internal_note = "glmmTMB's internal covariance parameters: log SDs, then the unconstrained correlation parameters",
    convergence = list(optimizer = "nlminb", code = fit$fit$convergence,
                       message = fit$fit$message,
                       iterations = fit$fit$iterations,
                       pdHess = fit$sdr$pdHess, max_abs_gradient = gr),
    contrasts = attr(X, "contrasts")
  )
  if (famname == "nbinom2") out$nb_theta <- sig
  if (famname == "Gamma") out$gamma_shape <- 1 / sig^2
  out$ranef <- ranef_block_tmb(fit)
  modifyList(out, extra)
}

# --------------------------------------------------------------------------
# One case: run, extract, write
# --------------------------------------------------------------------------

# spec: list(case, description, call, data_name, data (data frame),
#            dataset (list: file, levels_file, source, note), extra (list),
#            post (function(fit, out) -> out, optional))
make_case <- function(spec, outdir) {
  dl <- setNames(list(spec$data), spec$data_name)
  run <- run_call(spec$call, dl)
  status <- if (!is.null(run$error)) "error" else if (length(run$warnings)) "warning" else "ok"
  # repeated warnings (e.g. nlminb's "NA/NaN function evaluation") once, with a count
  collapse <- function(x) {
    if (!length(x)) return(x)
    tb <- table(factor(x, levels = unique(x)))
    ifelse(tb > 1, sprintf("%s [x%d]", names(tb), as.integer(tb)), names(tb))
  }
  run$warnings <- collapse(run$warnings); run$messages <- collapse(run$messages)
  engine <- if (grepl("^glmmTMB\\(", spec$call)) "glmmTMB::glmmTMB" else
            if (grepl("^glmer\\.nb\\(", spec$call)) "lme4::glmer.nb" else "lme4::glmer"
  base <- list(
    case = spec$case, description = spec$description, engine = engine,
    versions = versions_block(),
    dataset = c(list(name = spec$data_name), spec$dataset,
                list(nrow = nrow(spec$data))),
    call = spec$call, elapsed_s = run$elapsed, status = status,
    warnings = arr(run$warnings), messages = arr(run$messages),
    error = run$error)
  body <- list()
  if (is.null(run$error)) {
    fit <- run$fit
    body <- tryCatch(
      if (inherits(fit, "glmmTMB")) extract_glmmTMB(fit, run) else extract_glmer(fit, run),
      error = function(e) list(extraction_error = conditionMessage(e)))
    if (!is.null(spec$post)) body <- spec$post(fit, body)
    body$dataset_all_rows_used <- isTRUE(body$nobs == nrow(spec$data))
  }
  body$factors <- factors_block(spec$data)
  out <- c(base, body, spec$extra)
  # conventional key order: put engine just after description
  first <- intersect(c("case", "description", "engine"), names(out))
  out <- out[c(first, setdiff(names(out), first))]
  write_ref_json(out, file.path(outdir, paste0(spec$case, ".json")))
  cat(sprintf("%-45s %-8s logLik=%s  (%.2fs) %s\n", spec$case, status,
              if (is.null(out$logLik)) "NA" else format(out$logLik, digits = 12),
              run$elapsed,
              if (length(run$warnings)) paste("| W:", paste(run$warnings, collapse = " ; ")) else ""))
  invisible(list(fit = run$fit, out = out))
}
