## Reference values for Nakagawa & Schielzeth marginal / conditional R^2
## (Johnson 2014 random-slope extension, Nakagawa et al. 2017 GLMM extension)
## for lme4 fits, from performance::r2_nakagawa + insight::get_variance and,
## when it can be loaded, MuMIn::r.squaredGLMM.
##
## Run from this directory:
##     Rscript make_r2_refs.R
## MuMIn is optional; if it lives in a private library, point R at it, e.g.
##     R_LIBS=/tmp/rlib Rscript make_r2_refs.R
## Output: r2_refs.json (same directory).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  library(insight)
  library(performance)
})
has_mumin <- suppressWarnings(requireNamespace("MuMIn", quietly = TRUE))
if (has_mumin) options(MuMIn.noUpdateWarning = TRUE)

csv_dir <- file.path("..", "..", "..", "bayesmix", "datasets", "data")

## ---------------------------------------------------------------- data ----
## lme4's / nlme's own copies are used (factor codings and level orders as in
## R); the CSVs in bayesmix/datasets/data are compared against them.
data("sleepstudy", package = "lme4")
data("Penicillin", package = "lme4")
data("Arabidopsis", package = "lme4")
data("cbpp", package = "lme4")
data("grouseticks", package = "lme4")
data("VerbAgg", package = "lme4")
Orthodont <- as.data.frame(nlme::Orthodont)
## Subject is an *ordered* factor in nlme; as a grouping factor only its
## levels matter, so make it a plain factor (fit is identical).
Orthodont$Subject <- factor(as.character(Orthodont$Subject),
                            levels = levels(nlme::Orthodont$Subject))

csv_check <- function(rdata, file) {
  path <- file.path(csv_dir, file)
  if (!file.exists(path)) return(list(file = file, exists = FALSE))
  csv <- utils::read.csv(path, stringsAsFactors = FALSE)
  same_cols <- identical(sort(names(csv)), sort(names(rdata)))
  col_ok <- vapply(intersect(names(csv), names(rdata)), function(nm) {
    a <- rdata[[nm]]; b <- csv[[nm]]
    if (is.factor(a) || is.character(a)) {
      identical(as.character(a), as.character(b))
    } else {
      isTRUE(all.equal(as.numeric(a), as.numeric(b), tolerance = 1e-12))
    }
  }, logical(1))
  list(file = file, exists = TRUE, nrow_csv = nrow(csv), nrow_r = nrow(rdata),
       same_columns = same_cols, columns_equal = as.list(col_ok),
       matches = (nrow(csv) == nrow(rdata)) && same_cols && all(col_ok))
}

describe_data <- function(d) {
  lapply(d, function(v) {
    if (is.factor(v)) list(class = class(v), nlevels = nlevels(v),
                           levels = levels(v))
    else list(class = class(v))
  })
}

datasets <- list(
  sleepstudy = list(source = "lme4::sleepstudy",
                    csv = csv_check(sleepstudy, "sleepstudy.csv"),
                    columns = describe_data(sleepstudy)),
  Penicillin = list(source = "lme4::Penicillin",
                    csv = csv_check(Penicillin, "Penicillin.csv"),
                    columns = describe_data(Penicillin)),
  Orthodont = list(source = "nlme::Orthodont (as.data.frame; Subject unordered)",
                   csv = csv_check(Orthodont, "Orthodont.csv"),
                   columns = describe_data(Orthodont)),
  Arabidopsis = list(source = "lme4::Arabidopsis",
                     csv = csv_check(Arabidopsis, "Arabidopsis.csv"),
                     columns = describe_data(Arabidopsis)),
  cbpp = list(source = "lme4::cbpp", csv = csv_check(cbpp, "cbpp.csv"),
              columns = describe_data(cbpp)),
  grouseticks = list(source = "lme4::grouseticks (no CSV in the repo)",
                     csv = csv_check(grouseticks, "grouseticks.csv"),
                     columns = describe_data(grouseticks)),
  VerbAgg = list(source = "lme4::VerbAgg (no CSV in the repo)",
                 csv = csv_check(VerbAgg, "VerbAgg.csv"),
                 columns = describe_data(VerbAgg))
)

## ------------------------------------------------------------- helpers ----
capture <- function(expr) {
  warns <- character(0); msgs <- character(0)
  val <- withCallingHandlers(
    tryCatch(expr, error = function(e) structure(list(msg = conditionMessage(e)),
                                                 class = "captured_error")),
    warning = function(w) { warns <<- c(warns, conditionMessage(w))
                            invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, trimws(conditionMessage(m)))
                            invokeRestart("muffleMessage") })
  list(value = val, warnings = as.list(unique(warns)), messages = as.list(unique(msgs)),
       error = if (inherits(val, "captured_error")) val$msg else NULL)
}

named_list <- function(x) {
  if (is.null(x)) return(NULL)
  if (is.null(names(x))) return(unname(as.numeric(x)))
  as.list(setNames(as.numeric(x), names(x)))
}

varcorr_info <- function(fit) {
  vc <- VarCorr(fit)
  df <- as.data.frame(vc)
  rows <- lapply(seq_len(nrow(df)), function(i)
    list(grp = df$grp[i], var1 = if (is.na(df$var1[i])) NULL else df$var1[i],
         var2 = if (is.na(df$var2[i])) NULL else df$var2[i],
         vcov = df$vcov[i], sdcor = df$sdcor[i]))
  mats <- lapply(vc, function(m) {
    nm <- rownames(m)
    list(names = nm,
         cov = unname(lapply(seq_len(nrow(m)), function(i) as.numeric(m[i, ]))),
         sd = as.numeric(attr(m, "stddev")),
         corr = unname(lapply(seq_len(nrow(m)), function(i)
           as.numeric(attr(m, "correlation")[i, ]))))
  })
  list(table = rows, by_term = mats)
}

## Re-computation of insight's components from first principles, used to
## check the README formulas (must equal get_variance() to rounding).
manual_components <- function(fit) {
  X <- getME(fit, "X"); beta <- fixef(fit)
  eta_fixed <- as.vector(X %*% beta)
  n <- nrow(X)
  vc <- VarCorr(fit)
  nlev <- vapply(ranef(fit), nrow, numeric(1))
  olre <- names(nlev)[nlev == n]
  term_var <- vapply(names(vc), function(g) {
    S <- vc[[g]]
    Xi <- X
    if (!"(Intercept)" %in% colnames(Xi)) Xi <- cbind(`(Intercept)` = 1, Xi)
    rn <- rownames(S)
    keep <- rn %in% colnames(Xi)
    rn <- rn[keep]; S <- S[keep, keep, drop = FALSE]
    Z <- Xi[, rn, drop = FALSE]
    mean(rowSums((Z %*% S) * Z))
  }, numeric(1))
  list(var_fixed_n_minus_1 = var(eta_fixed),
       var_fixed_n = mean((eta_fixed - mean(eta_fixed))^2),
       mean_eta_fixed = mean(eta_fixed),
       per_term_mean_zSz = named_list(term_var),
       observation_level_terms = as.list(olre),
       var_random_johnson = sum(term_var[setdiff(names(term_var), olre)]),
       var_olre = sum(term_var[olre]))
}

r2_from <- function(vf, vr, vres) {
  list(R2_marginal = vf / (vf + vr + vres),
       R2_conditional = (vf + vr) / (vf + vr + vres))
}

## ------------------------------------------------------------- cases ------
cases <- list(
  sleep_slopes_reml = list(
    desc = "LMM, correlated random intercept+slope, REML",
    call = quote(lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy))),
  sleep_slopes_ml = list(
    desc = "LMM, correlated random intercept+slope, ML",
    call = quote(lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy,
                      REML = FALSE))),
  sleep_int = list(
    desc = "LMM, random intercept only, REML",
    call = quote(lmer(Reaction ~ Days + (1 | Subject), data = sleepstudy))),
  penicillin = list(
    desc = "LMM, intercept-only fixed part, two crossed random intercepts, REML (var.fixed = 0)",
    call = quote(lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = Penicillin))),
  orthodont = list(
    desc = "LMM, age*Sex fixed, correlated random intercept+slope on age, REML; Sex levels Male (ref), Female",
    call = quote(lmer(distance ~ age * Sex + (age | Subject), data = Orthodont))),
  arabidopsis_gauss = list(
    desc = "LMM on log(1+total.fruits), nested random intercepts popu and popu:gen, ML; nutrient (1/8) and rack (1/2) are integer columns in lme4::Arabidopsis and enter as numeric covariates",
    call = quote(lmer(log(1 + total.fruits) ~ nutrient * amd + rack + status +
                        (1 | popu) + (1 | popu:gen), data = Arabidopsis,
                      REML = FALSE))),
  cbpp_binomial = list(
    desc = "binomial GLMM with trials (cbind), logit link, Laplace",
    call = quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                       data = cbpp, family = binomial))),
  cbpp_probit = list(
    desc = "binomial GLMM with trials (cbind), probit link, Laplace",
    call = quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                       data = cbpp, family = binomial(link = "probit")))),
  verbagg_bernoulli = list(
    desc = "Bernoulli GLMM (r2: N/Y factor, models P(Y)), logit, crossed random intercepts id and item, Laplace",
    call = quote(glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item),
                       data = VerbAgg, family = binomial))),
  grouse_poisson = list(
    desc = "Poisson GLMM, log link, random intercepts BROOD and INDEX (INDEX has one level per row = observation-level RE), raw HEIGHT, YEAR factor, Laplace",
    call = quote(glmer(TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX),
                       data = grouseticks, family = poisson))),
  arabidopsis_poisson_slopes = list(
    desc = "Poisson GLMM, log link, correlated random intercept + nutrient slope by popu; nutrient numeric (1/8), Laplace",
    call = quote(glmer(total.fruits ~ nutrient + amd + (nutrient | popu),
                       data = Arabidopsis, family = poisson)))
)

run_case <- function(name, spec) {
  cat("fitting", name, "...\n")
  t0 <- proc.time()[["elapsed"]]
  f <- capture(eval(spec$call, envir = globalenv()))
  out <- list(case = name, description = spec$desc,
              r_call = paste(deparse(spec$call, width.cutoff = 500L), collapse = " "),
              fit_warnings = f$warnings, fit_messages = f$messages)
  if (!is.null(f$error)) {
    out$status <- "fit_error"; out$error <- f$error
    return(out)
  }
  fit <- f$value
  fam <- family(fit)
  is_glmm <- inherits(fit, "glmerMod")
  out$status <- "ok"
  out$engine <- if (is_glmm) "lme4::glmer" else "lme4::lmer"
  out$formula <- paste(deparse(formula(fit), width.cutoff = 500L), collapse = " ")
  out$family <- fam$family
  out$link <- fam$link
  out$REML <- if (is_glmm) FALSE else isREML(fit)
  out$REML_note <- if (is_glmm) "glmer: Laplace approximation (nAGQ = 1); REML not applicable" else NULL
  out$nobs <- nobs(fit)
  out$ngrps <- named_list(ngrps(fit))
  ll <- logLik(fit)
  out$logLik <- as.numeric(ll)
  out$df_logLik <- attr(ll, "df")
  out$deviance <- if (is_glmm) deviance(fit) else NULL
  out$REMLcrit <- if (!is_glmm && isREML(fit)) REMLcrit(fit) else NULL
  out$fixef <- named_list(fixef(fit))
  out$varcorr <- varcorr_info(fit)
  out$sigma <- sigma(fit)
  out$sigma_note <- if (is_glmm) "lme4 sigma() is 1 for binomial/poisson" else NULL
  out$isSingular <- isSingular(fit)
  out$convergence_messages <- as.list(fit@optinfo$conv$lme4$messages)
  out$optimizer_warnings <- as.list(fit@optinfo$warnings)
  out$theta <- named_list(getME(fit, "theta"))
  if (is_glmm && fam$family == "binomial") {
    y <- model.response(model.frame(fit))
    out$binomial_response <- if (is.null(dim(y))) "bernoulli (0/1 or two-level factor)" else "cbind(successes, failures)"
  }

  ## ---- performance::r2_nakagawa (default arguments) ----
  r2 <- capture(performance::r2_nakagawa(fit))
  out$performance_r2_nakagawa <- if (!is.null(r2$error)) list(error = r2$error) else list(
    R2_conditional = unname(as.numeric(r2$value$R2_conditional)),
    R2_marginal = unname(as.numeric(r2$value$R2_marginal)),
    warnings = r2$warnings, messages = r2$messages)
  out$performance_r2_nakagawa$approximation_argument <- list(
    supported = "approximation" %in% names(formals(performance::r2_nakagawa)),
    formals = as.list(names(formals(performance::r2_nakagawa))))

  ## ---- insight::get_variance ----
  gv <- capture(insight::get_variance(fit))
  out$insight_get_variance <- if (is.null(gv$value) || !is.null(gv$error)) list(error = if (is.null(gv$error)) "NULL returned" else gv$error) else c(
    lapply(gv$value, named_list),
    list(warnings = gv$warnings, messages = gv$messages))
  out$insight_get_variance$approximation_argument <- list(
    supported = "approximation" %in% names(formals(insight:::get_variance.merMod)),
    formals = as.list(names(formals(insight:::get_variance.merMod))))

  ## ---- manual re-computation of insight's formulas ----
  mc <- manual_components(fit)
  out$manual_check <- mc
  if (is_glmm && fam$family == "poisson" && fam$link == "log") {
    ## insight's lambda: exp(intercept of the null model = same random part,
    ## fixed part ~ 1, refitted with update()); no +var/2 correction.
    nf <- capture(insight::null_model(fit))
    null_fit <- nf$value
    b0 <- unname(fixef(null_fit)[1])
    lam <- exp(b0)
    vf <- gv$value$var.fixed; vr <- gv$value$var.random
    vdisp <- gv$value$var.dispersion
    alt <- list(
      lognormal = log1p(1 / lam),
      delta = 1 / lam,
      trigamma = trigamma(lam))
    out$manual_check$poisson <- list(
      note = paste("NOT package output: hand-computed with insight's lambda = exp(beta0_null);",
                   "lognormal must equal insight var.distribution; delta/trigamma are the",
                   "Nakagawa et al. 2017 alternatives with the same lambda, residual =",
                   "var.distribution + var.dispersion (OLRE variance)."),
      null_model_formula = paste(deparse(formula(null_fit), width.cutoff = 500L), collapse = " "),
      null_model_fixef = named_list(fixef(null_fit)),
      null_model_logLik = as.numeric(logLik(null_fit)),
      null_model_varcorr = varcorr_info(null_fit),
      null_model_warnings = nf$warnings,
      lambda = lam,
      var_distribution = alt,
      r2 = lapply(alt, function(vd) r2_from(vf, vr, vd + vdisp)))
  }

  ## ---- MuMIn::r.squaredGLMM ----
  if (has_mumin) {
    mm <- capture(MuMIn::r.squaredGLMM(fit))
    if (!is.null(mm$error)) {
      out$mumin_r_squaredGLMM <- list(error = mm$error, warnings = mm$warnings)
    } else {
      m <- mm$value
      rows <- lapply(seq_len(nrow(m)), function(i)
        list(R2m = unname(m[i, "R2m"]), R2c = unname(m[i, "R2c"])))
      names(rows) <- if (is.null(rownames(m))) rep("value", nrow(m)) else rownames(m)
      ## MuMIn's ingredients (re-derived, mirrors MuMIn 1.47.5 source)
      ## (model.matrix(type = "randomListRaw") warns "numerical expression has
      ## n elements" for the popu:gen term; harmless, the matrix is right)
      mmRE <- suppressWarnings(do.call("cbind", model.matrix(fit, type = "randomListRaw")))
      mmRE <- mmRE[, !duplicated(colnames(mmRE)), drop = FALSE]
      varRESum <- function(vc) sum(sapply(vc, function(S) {
        Z <- mmRE[, rownames(S), drop = FALSE]; mean(rowSums((Z %*% S) * Z)) }))
      ing <- list(varFE = var(as.vector(getME(fit, "X") %*% fixef(fit))),
                  varRE_all_terms = varRESum(VarCorr(fit)))
      if (is_glmm) {
        nf <- suppressWarnings(suppressMessages(insight::null_model(fit)))
        b0 <- unname(fixef(nf)[1]); vt <- varRESum(VarCorr(nf))
        ing$beta0_null <- b0; ing$varRE_null <- vt
        if (fam$family == "poisson") ing$lambda <- exp(b0 + 0.5 * vt)
        if (fam$family == "binomial") {
          ing$pmean <- fam$linkinv(b0 - 0.5 * vt * tanh(b0 * (1 + 2 * exp(-0.5 * vt)) / 6))
          y <- model.response(model.frame(fit))
          ing$binomial_n <- if (is.null(dim(y))) 1 else mean(rowSums(y))
        }
      }
      out$mumin_r_squaredGLMM <- list(rows = rows, warnings = mm$warnings,
                                      ingredients_recomputed = ing)
    }
  }
  out$elapsed_s <- proc.time()[["elapsed"]] - t0
  out
}

results <- lapply(names(cases), function(nm) run_case(nm, cases[[nm]]))
names(results) <- names(cases)

pkg_ver <- function(p) if (requireNamespace(p, quietly = TRUE))
  as.character(utils::packageVersion(p)) else NULL
out <- list(
  generated_by = "tests/refs/r2/make_r2_refs.R",
  generated_at = format(Sys.time(), tz = "UTC", usetz = TRUE),
  versions = list(R = R.version.string, lme4 = pkg_ver("lme4"),
                  Matrix = pkg_ver("Matrix"), performance = pkg_ver("performance"),
                  insight = pkg_ver("insight"), nlme = pkg_ver("nlme"),
                  MuMIn = if (has_mumin) pkg_ver("MuMIn") else NULL,
                  jsonlite = pkg_ver("jsonlite")),
  mumin_available = has_mumin,
  datasets = datasets,
  cases = results)

jsonlite::write_json(out, "r2_refs.json", digits = NA, auto_unbox = TRUE,
                     pretty = TRUE, null = "null", na = "null")
cat("wrote r2_refs.json\n")
for (nm in names(results)) {
  r <- results[[nm]]
  cat(sprintf("%-28s %-9s R2m=%s R2c=%s\n", nm, r$status,
              format(r$performance_r2_nakagawa$R2_marginal, digits = 6),
              format(r$performance_r2_nakagawa$R2_conditional, digits = 6)))
}
