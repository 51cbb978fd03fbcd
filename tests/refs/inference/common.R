# Shared helpers for the inference reference scripts in tests/refs/inference/.
# Source from that directory:  Rscript make_<group>.R  (each script sources this file).
#
# Conventions
#  * every JSON is written with jsonlite (digits = NA -> full precision, auto_unbox = TRUE,
#    na = "null", null = "null"), so R's NA / NaN / Inf appear as JSON null;
#  * tables (matrices, anova / data frames) become arrays of records; the R row names are
#    stored in a leading `term` field and the R column names are kept verbatim
#    (e.g. "Std. Error", "Pr(>|t|)", "2.5 %");
#  * every R call is wrapped by run_item(): {table, warnings, messages, error, elapsed_s}.
#    Warnings and errors are recorded, never dropped.

options(contrasts = c("contr.treatment", "contr.poly"))
suppressPackageStartupMessages({
  library(jsonlite)
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(nlme)
})
# lme4 and nlme both export lmList / fixef / ranef / VarCorr; the lme4 ones are wanted for merMod
fixef <- lme4::fixef
ranef <- lme4::ranef
VarCorr <- lme4::VarCorr

OUT_DIR <- normalizePath(".")
if (basename(OUT_DIR) != "inference") stop("run from tests/refs/inference/")

versions <- function() {
  pk <- c("lme4", "lmerTest", "pbkrtest", "nlme", "Matrix", "numDeriv", "MASS", "minqa",
          "nloptr", "jsonlite", "boot")
  si <- sessionInfo()
  list(
    R = R.version.string,
    platform = R.version$platform,
    packages = as.list(vapply(pk, function(p) as.character(packageVersion(p)), "")),
    BLAS = si$BLAS, LAPACK = si$LAPACK,
    contrasts_option = as.list(getOption("contrasts")),
    RNGkind = I(RNGkind())
  )
}

# convert a matrix / data.frame / anova table to records with the row names as `term`
recs <- function(x) {
  if (is.null(x)) return(NULL)
  if (inherits(x, "Matrix")) x <- as.matrix(x)
  rn <- rownames(x)
  df <- as.data.frame(x, stringsAsFactors = FALSE)
  if (is.matrix(x) && !is.null(colnames(x))) names(df) <- colnames(x)  # never mangle names
  for (j in seq_along(df)) if (is.factor(df[[j]])) df[[j]] <- as.character(df[[j]])
  if (is.null(rn)) rn <- as.character(seq_len(nrow(df)))
  out <- cbind(data.frame(term = rn, stringsAsFactors = FALSE), df)
  rownames(out) <- NULL
  out
}

# plain data frame -> records without a term column
drecs <- function(df) {
  df <- as.data.frame(df, stringsAsFactors = FALSE)
  for (j in seq_along(df)) if (is.factor(df[[j]])) df[[j]] <- as.character(df[[j]])
  rownames(df) <- NULL
  df
}

nv <- function(x) as.list(x)  # named vector -> JSON object

# evaluate expr, capturing warnings / messages / error and elapsed time (system.time)
run_item <- function(expr, conv = recs, call = NULL) {
  warns <- character(0); msgs <- character(0); err <- NULL
  val <- NULL
  st <- system.time(
    val <- withCallingHandlers(
      tryCatch(expr, error = function(e) { err <<- conditionMessage(e); NULL }),
      warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
      message = function(m) { msgs <<- c(msgs, sub("\n$", "", conditionMessage(m))); invokeRestart("muffleMessage") }
    )
  )
  out <- list()
  if (!is.null(call)) out$call <- call
  out["table"] <- list(if (is.null(err) && !is.null(val)) conv(val) else NULL)
  out$warnings <- I(unique(warns))
  out$messages <- I(unique(msgs))
  out["error"] <- list(err)
  out$elapsed_s <- unname(st[["elapsed"]])
  attr(out, "value") <- val
  out
}
value_of <- function(item) attr(item, "value")

# fit a model with warning / message capture; returns list(fit, info)
fit_model <- function(expr_text, env = parent.frame()) {
  it <- run_item(eval(parse(text = expr_text), envir = env), conv = function(v) NULL)
  fit <- value_of(it)
  if (is.null(fit)) stop("fit failed: ", expr_text, ": ", it$error)
  list(fit = fit, info = list(call = expr_text, elapsed_s = it$elapsed_s,
                              warnings = it$warnings, messages = it$messages))
}

# basic lme4 fit summary
merMod_basics <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  vc$var1 <- as.character(vc$var1); vc$var2 <- as.character(vc$var2)
  ll <- logLik(fit)
  isREML <- isREML(fit)
  list(
    method = if (isREML) "REML" else "ML",
    nobs = nobs(fit),
    ngrps = nv(ngrps(fit)),
    logLik = as.numeric(ll),
    logLik_df = attr(ll, "df"),
    AIC = AIC(fit), BIC = BIC(fit),
    REMLcrit = if (isREML) unname(getME(fit, "devcomp")$cmp[["REML"]]) else NULL,
    deviance = if (!isREML) deviance(fit) else NULL,
    fixef = nv(fixef(fit)),
    sigma = sigma(fit),
    theta = nv(getME(fit, "theta")),
    VarCorr = drecs(vc),
    vcov_fixef = recs(as.matrix(vcov(fit))),
    isSingular = isSingular(fit),
    optimizer_messages = I(as.character(unlist(fit@optinfo$conv$lme4$messages)))
  )
}

# write a dataset as CSV plus a <name>.levels.json in the round2 format
write_dataset <- function(df, name, source, note = NULL) {
  df <- as.data.frame(df)
  fn <- file.path(OUT_DIR, paste0(name, ".csv"))
  write.csv(df, fn, row.names = FALSE, na = "NA")
  cls <- lapply(df, function(x) if (is.ordered(x)) "ordered" else class(x)[1])
  facs <- list()
  for (nm in names(df)) if (is.factor(df[[nm]]))
    facs[[nm]] <- list(levels = I(levels(df[[nm]])), ordered = is.ordered(df[[nm]]))
  lv <- list(dataset = name, source = source, nrow = nrow(df), ncol = ncol(df),
             column_class = cls, factors = facs, na_string = "NA", note = note)
  write_json(lv, file.path(OUT_DIR, paste0(name, ".levels.json")), auto_unbox = TRUE,
             pretty = TRUE, digits = NA, null = "null")
  # round-trip check: the CSV must reproduce the numeric columns exactly
  back <- read.csv(fn, stringsAsFactors = FALSE)
  for (nm in names(df)) if (is.numeric(df[[nm]]))
    if (!isTRUE(all.equal(back[[nm]], df[[nm]], tolerance = 0))) stop("CSV round trip lost precision: ", nm)
  invisible(fn)
}

# restore a round2-format CSV + levels.json
read_dataset <- function(csv, levels_json) {
  df <- read.csv(csv, stringsAsFactors = FALSE, na.strings = "NA")
  lv <- fromJSON(levels_json, simplifyVector = TRUE)
  for (nm in names(lv$factors)) {
    f <- lv$factors[[nm]]
    df[[nm]] <- factor(as.character(df[[nm]]), levels = f$levels, ordered = isTRUE(f$ordered))
  }
  df
}

save_json <- function(x, file) {
  write_json(x, file.path(OUT_DIR, file), auto_unbox = TRUE, pretty = TRUE, digits = NA,
             na = "null", null = "null")
  cat("wrote", file, "\n")
}

# ---- the lmerTest / pbkrtest / lme4 inference items for one lmer fit ---------------------

lmm_items <- function(fit, items) {
  out <- list()
  reml <- isREML(fit)
  if ("sat" %in% items)
    out$summary_satterthwaite <- run_item(summary(fit, ddf = "Satterthwaite")$coefficients,
                                          call = 'summary(fit, ddf = "Satterthwaite")$coefficients')
  if ("sat" %in% items) out$summary_satterthwaite$note <-
    "lmerTest Satterthwaite df use a numerical (numDeriv) Hessian of the variance parameters: expect ~1e-6 relative agreement, not machine precision"
  if ("kr" %in% items) {
    out$summary_kenward_roger <- run_item(summary(fit, ddf = "Kenward-Roger")$coefficients,
                                          call = 'summary(fit, ddf = "Kenward-Roger")$coefficients')
    if (!reml) out$summary_kenward_roger$note <-
      "ML fit: lmerTest refuses Kenward-Roger for ML fits (error recorded, no table); the anova KR items fail the same way"
  }
  for (ty in c(3, 1)) for (dd in c("Satterthwaite", "Kenward-Roger")) {
    key <- paste0("anova_type", ty, "_", if (dd == "Satterthwaite") "satterthwaite" else "kenward_roger")
    flag <- paste0("anova", ty, if (dd == "Satterthwaite") "_sat" else "_kr")
    if (flag %in% items)
      out[[key]] <- run_item(anova(fit, type = ty, ddf = dd),
                             call = sprintf('anova(fit, type = %d, ddf = "%s")', ty, dd))
  }
  if ("profile" %in% items)
    out$confint_profile <- run_item(confint(fit, method = "profile", oldNames = FALSE),
                                    call = 'confint(fit, method = "profile", oldNames = FALSE)')
  if ("wald" %in% items)
    out$confint_wald <- run_item(confint(fit, method = "Wald", oldNames = FALSE),
                                 call = 'confint(fit, method = "Wald", oldNames = FALSE)')
  if ("ranova" %in% items)
    out$ranova <- run_item(ranova(fit), call = "lmerTest::ranova(fit)")
  if ("drop1" %in% items)
    out$drop1 <- run_item(drop1(fit), call = "lmerTest::drop1(fit)  # ddf = Satterthwaite, type 3 F tests")
  if ("vcovadj" %in% items) {
    out$pbkrtest_vcovAdj <- run_item(as.matrix(pbkrtest::vcovAdj(fit)),
                                     call = "as.matrix(pbkrtest::vcovAdj(fit))")
    out$pbkrtest_vcovAdj$note <- if (reml)
      "Kenward-Roger adjusted covariance of the fixed effects (REML fit)" else
      "ML fit: pbkrtest::vcovAdj.lmerMod silently refits the model with REML = TRUE (update(object, . ~ ., REML = TRUE)), so this is the REML fit's KR covariance, identical to the REML JSON's"
  }
  out
}

ALL_ITEMS <- c("sat", "kr", "anova3_sat", "anova3_kr", "anova1_sat", "anova1_kr", "profile",
               "wald", "ranova", "drop1", "vcovadj")

status_of <- function(obj) {
  # per-item summary: which top-level items errored / warned ("ok" if none)
  errs <- character(0); warns <- character(0)
  walk <- function(x, path) {
    if (!is.list(x)) return(invisible())
    if (length(x$error)) errs <<- c(errs, path)
    if (length(x$warnings)) warns <<- c(warns, path)
    for (nm in names(x)) if (is.list(x[[nm]]) && !is.data.frame(x[[nm]]))
      walk(x[[nm]], if (path == "") nm else paste(path, nm, sep = "."))
  }
  walk(obj, "")
  list(overall = if (length(errs)) "some items errored" else if (length(warns)) "warning" else "ok",
       items_with_error = I(errs), items_with_warnings = I(warns),
       note = "an item's error/warnings fields hold R's text; items without an error are valid references")
}
