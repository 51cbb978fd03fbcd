# make_formula_refs.R
#
# Generates R reference values for formula / contrast handling in linear
# mixed models (lme4::lmer), to be compared against bayesmix.
#
# Run from anywhere:   Rscript make_formula_refs.R
# All outputs are written next to this script:
#   <case>_reml.json, <case>_ml.json   one fit per file
#   <dataset>.csv                      the data each fit used
#   datasets_factors.json              factor columns/levels of many R data sets
#
# Factor level order and orderedness are NOT preserved by CSV, so each case
# JSON records them explicitly in "factors", and datasets_factors.json lists
# them for a wider set of R data sets.

suppressPackageStartupMessages({
  library(lme4)      # lmer, cake, sleepstudy, ...
  library(jsonlite)
})

# ---------------------------------------------------------------------------
# Locate output directory (= directory of this script).
# ---------------------------------------------------------------------------
get_script_dir <- function() {
  args <- commandArgs(trailingOnly = FALSE)
  f <- sub("^--file=", "", args[grep("^--file=", args)])
  if (length(f) == 1) dirname(normalizePath(f)) else getwd()
}
outdir <- get_script_dir()

# ---------------------------------------------------------------------------
# Data. nlme's groupedData objects are turned into plain data.frames so that
# lmer sees ordinary columns; factor levels and orderedness are kept as in R.
# nlme is not attached (it masks lme4::lmList); its data are loaded by name.
# ---------------------------------------------------------------------------
load_data <- function(name, package) {
  e <- new.env()
  utils::data(list = name, package = package, envir = e)
  d <- get(name, envir = e)
  d <- as.data.frame(d)
  attr(d, "formula") <- NULL   # drop groupedData leftovers, if any
  attr(d, "labels") <- NULL
  attr(d, "units") <- NULL
  attr(d, "outer") <- NULL
  attr(d, "inner") <- NULL
  attr(d, "FUN") <- NULL
  attr(d, "order.groups") <- NULL
  class(d) <- "data.frame"
  d
}

cake       <- load_data("cake", "lme4")
sleepstudy <- load_data("sleepstudy", "lme4")
Orthodont  <- load_data("Orthodont", "nlme")
Ovary      <- load_data("Ovary", "nlme")
Machines   <- load_data("Machines", "nlme")

datasets <- list(cake = cake, sleepstudy = sleepstudy, Orthodont = Orthodont,
                 Ovary = Ovary, Machines = Machines)

# Write each data set once as CSV.
for (nm in names(datasets)) {
  utils::write.csv(datasets[[nm]], file.path(outdir, paste0(nm, ".csv")),
                   row.names = FALSE)
}

# ---------------------------------------------------------------------------
# Cases: name, data set name, model formula text, extra lmer arguments text.
# The exact call string is assembled from these and evaluated, so the "call"
# recorded in the JSON is literally what was run.
# ---------------------------------------------------------------------------
cases <- list(
  list(name = "cake_ordered", data = "cake",
       formula = "angle ~ recipe * temperature + (1 | recipe:replicate)",
       extra = NULL),
  list(name = "cake_crossing", data = "cake",
       formula = "angle ~ (recipe + temperature)^2 + (1 | recipe:replicate)",
       extra = NULL),
  list(name = "orthodont_sum", data = "Orthodont",
       formula = "distance ~ age * Sex + (1 | Subject)",
       extra = 'contrasts = list(Sex = "contr.sum")'),
  list(name = "orthodont_Csum", data = "Orthodont",
       formula = "distance ~ age * C(Sex, contr.sum) + (1 | Subject)",
       extra = NULL),
  list(name = "machines_helmert", data = "Machines",
       formula = "score ~ Machine + (1 | Worker)",
       extra = 'contrasts = list(Machine = "contr.helmert")'),
  list(name = "machines_poly_forced", data = "Machines",
       formula = "score ~ C(Machine, contr.poly) + (1 | Worker)",
       extra = NULL),
  list(name = "orthodont_Isq", data = "Orthodont",
       formula = "distance ~ age + I(age^2) + Sex + (1 | Subject)",
       extra = NULL),
  list(name = "ovary_sin", data = "Ovary",
       formula = "follicles ~ sin(2 * pi * Time) + cos(2 * pi * Time) + (1 | Mare)",
       extra = NULL),
  list(name = "sleepstudy_poly", data = "sleepstudy",
       formula = "Reaction ~ poly(Days, 2) + (Days | Subject)",
       extra = NULL),
  list(name = "cake_in", data = "cake",
       formula = "angle ~ recipe + temp %in% recipe + (1 | recipe:replicate)",
       extra = NULL),
  list(name = "cake_sum_inter", data = "cake",
       formula = "angle ~ recipe * temperature + (1 | recipe:replicate)",
       extra = 'contrasts = list(recipe = "contr.sum", temperature = "contr.sum")'),
  list(name = "cake_ordered_noint", data = "cake",
       formula = "angle ~ 0 + temperature + (1 | recipe:replicate)",
       extra = NULL)
)

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# Default contrast R would pick for a factor (options("contrasts")).
default_contrast <- function(f) {
  oc <- getOption("contrasts")
  if (is.ordered(f)) unname(oc[2]) else unname(oc[1])
}

# Contrast actually used for each data factor column in the fixed-effects
# design. Sources, in priority order:
#   * attr(X, "contrasts") for the bare column name (covers contrasts= arg
#     and defaults),
#   * an inline C(col, contr.xxx) term in the fixed formula,
#   * otherwise the factor is not in the fixed effects (e.g. grouping factor)
#     and the R default for that factor is reported, flagged as not used.
factor_info <- function(fit, data, fixed_formula_text) {
  X <- getME(fit, "X")
  xc <- attr(X, "contrasts")
  out <- list()
  for (col in names(data)) {
    f <- data[[col]]
    if (!is.factor(f)) next
    in_fixed <- FALSE
    con <- default_contrast(f)
    src <- "default (factor not in fixed effects)"
    if (!is.null(xc) && col %in% names(xc)) {
      v <- xc[[col]]
      con <- if (is.character(v)) v else "matrix"
      in_fixed <- TRUE
      src <- "attr(X, 'contrasts')"
    } else {
      m <- regmatches(fixed_formula_text,
                      regexpr(paste0("C\\(", col, ",\\s*([A-Za-z_.]+)\\)"),
                              fixed_formula_text))
      if (length(m) == 1) {
        con <- sub(paste0("C\\(", col, ",\\s*([A-Za-z_.]+)\\)"), "\\1", m)
        in_fixed <- TRUE
        src <- "inline C()"
      }
    }
    # A factor entering a model without intercept as a main effect gets one
    # indicator column per level: the contrast is then not applied, though
    # attr(X, "contrasts") still names it.  Detect that and say so.
    coding <- if (!in_fixed) "none" else "contrasts"
    tl <- attr(terms(fit, fixed.only = TRUE), "term.labels")
    asg <- attr(X, "assign")
    k <- match(col, tl)
    if (in_fixed && !is.na(k) && sum(asg == k) == nlevels(f))
      coding <- "full indicator (one column per level)"
    out[[col]] <- list(levels = levels(f), ordered = is.ordered(f),
                       contrasts = con, in_fixed_effects = in_fixed,
                       contrasts_source = src, main_effect_coding = coding)
  }
  out
}

# Fit one case with the given REML flag and write its JSON.
run_case <- function(cs, reml) {
  method <- if (reml) "REML" else "ML"
  args <- c(cs$formula, paste0("data = ", cs$data), cs$extra,
            if (!reml) "REML = FALSE")
  call_str <- paste0("lmer(", paste(args, collapse = ", "), ")")

  # Capture warnings and messages (e.g. singular fit) rather than lose them.
  warns <- character(0)
  fit <- withCallingHandlers(
    eval(parse(text = call_str), envir = globalenv()),
    warning = function(w) { warns <<- c(warns, conditionMessage(w));
                            invokeRestart("muffleWarning") },
    message = function(m) { warns <<- c(warns, trimws(conditionMessage(m)));
                            invokeRestart("muffleMessage") })

  ll <- logLik(fit)
  fe <- fixef(fit)
  se <- sqrt(diag(as.matrix(vcov(fit))))
  names(se) <- names(fe)
  vc <- as.data.frame(VarCorr(fit))
  varcor <- lapply(seq_len(nrow(vc)), function(i)
    list(grp = vc$grp[i],
         var1 = if (is.na(vc$var1[i])) NA else vc$var1[i],
         var2 = if (is.na(vc$var2[i])) NA else vc$var2[i],
         sdcor = vc$sdcor[i]))

  fixed_text <- paste(deparse(nobars(formula(fit))), collapse = " ")

  res <- list(
    name     = paste0(cs$name, "_", tolower(method)),
    package  = "lme4",
    call     = call_str,
    data     = paste0(cs$data, ".csv"),
    method   = method,
    logLik   = as.numeric(ll),
    AIC      = AIC(fit),
    BIC      = BIC(fit),
    df       = attr(ll, "df"),
    nobs     = nobs(fit),
    sigma    = sigma(fit),
    fixef    = as.list(fe),
    se       = as.list(se),
    varcor   = varcor,
    factors  = factor_info(fit, get(cs$data, envir = globalenv()), fixed_text),
    singular = isSingular(fit),
    r_messages = warns,
    R_version = R.version.string,
    lme4_version = as.character(packageVersion("lme4"))
  )
  fn <- file.path(outdir, paste0(res$name, ".json"))
  writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE,
                    na = "null"), fn)
  cat(sprintf("%-30s logLik=%.6f  coefs: %s\n", res$name, res$logLik,
              paste(names(fe), collapse = " | ")))
  if (length(warns)) cat("   R messages:", paste(warns, collapse = " ;; "), "\n")
  invisible(res)
}

for (cs in cases) {
  run_case(cs, reml = TRUE)
  run_case(cs, reml = FALSE)
}

# ---------------------------------------------------------------------------
# datasets_factors.json: every factor column (levels in R order, ordered?)
# for a list of data sets, with the package each was actually taken from.
# ---------------------------------------------------------------------------
ds_list <- list(
  lme4     = c("sleepstudy", "Arabidopsis", "Dyestuff", "Penicillin", "Pastes",
               "cake", "cbpp", "InstEval"),
  nlme     = c("Orthodont", "Ovary", "Oxboys", "Machines", "BodyWeight"),
  datasets = c("Theoph", "Indometh", "Loblolly", "Orange", "ChickWeight",
               "DNase", "CO2", "Puromycin")
)

ds_out <- list()
for (pkg in names(ds_list)) {
  for (nm in ds_list[[pkg]]) {
    e <- new.env()
    utils::data(list = nm, package = pkg, envir = e)
    d <- get(nm, envir = e)
    cls <- class(d)
    d <- as.data.frame(d)
    facs <- list()
    for (col in names(d)) {
      f <- d[[col]]
      if (is.factor(f))
        facs[[col]] <- list(levels = levels(f), ordered = is.ordered(f),
                            nlevels = nlevels(f))
    }
    ds_out[[nm]] <- list(
      package = pkg,
      class = cls,
      nrow = nrow(d),
      columns = as.list(vapply(d, function(x) class(x)[1], "")),
      factors = if (length(facs)) facs else structure(list(), names = character(0))
    )
  }
}
writeLines(toJSON(list(R_version = R.version.string,
                       note = "levels in R order; ordered = is.ordered()",
                       datasets = ds_out),
                  digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(outdir, "datasets_factors.json"))
cat("wrote datasets_factors.json\n")
