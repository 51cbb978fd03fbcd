# nlme's intervals() of gls fits with a correlation structure and a variance function.
# Run from this directory: Rscript make_gls_structure_intervals.R
suppressMessages({library(nlme); library(jsonlite)})
cases <- list(
  ovary_gls_ar1 = function(m) gls(follicles ~ sin(2 * pi * Time) + cos(2 * pi * Time), Ovary,
                                  correlation = corAR1(form = ~ 1 | Mare), method = m),
  orthodont_gls_varident = function(m) gls(distance ~ age + Sex, Orthodont,
                                           weights = varIdent(form = ~ 1 | Sex), method = m))
tab <- function(x) lapply(seq_len(nrow(x)), function(i) list(
  term = rownames(x)[i], lower = unname(x[i, "lower"]), est = unname(x[i, "est."]),
  upper = unname(x[i, "upper"])))
out <- list(versions = list(R = R.version.string, nlme = as.character(packageVersion("nlme"))))
for (name in names(cases)) for (m in c("ML", "REML")) {
  fit <- cases[[name]](m)
  iv <- intervals(fit, level = 0.95, which = "all")
  structure <- if (!is.null(iv$corStruct)) iv$corStruct else iv$varStruct
  out[[paste(name, tolower(m), sep = "_")]] <- list(
    call = paste(deparse(fit$call), collapse = ""), logLik = as.numeric(logLik(fit)),
    coef = tab(iv$coef), structure = tab(structure),
    sigma = list(lower = unname(iv$sigma["lower"]), est = unname(iv$sigma["est."]),
                 upper = unname(iv$sigma["upper"])))
}
write.csv(as.data.frame(Ovary), "Ovary_gls.csv", row.names = FALSE)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "gls_structure_intervals.json")
