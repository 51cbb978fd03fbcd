# Type III F tests of terms contained in interactions (A in A:B and A:x), unbalanced:
# lmerTest orthogonalises treatment-coded hypothesis rows, bayesmix uses sum-coded ones;
# F is the same, Satterthwaite's combined DenDF may differ slightly. The data were
# simulated once in Python (seed 3, see tests/test_inference.py) and saved as
# contained_terms.csv.  Run from this directory: Rscript make_contained_terms.R
suppressMessages({library(lmerTest); library(jsonlite)})
d <- read.csv("contained_terms.csv")
d$A <- factor(d$A); d$B <- factor(d$B); d$g <- factor(d$g)
fit <- lmer(y ~ A * B + A * x + (1 | g), d)
a3 <- anova(fit, type = 3, ddf = "Satterthwaite")
kr <- anova(fit, type = 3, ddf = "Kenward-Roger")
rows <- function(a) lapply(seq_len(nrow(a)), function(i) list(
  term = rownames(a)[i], NumDF = a$NumDF[i], DenDF = a$DenDF[i], F = a[["F value"]][i],
  p = a[["Pr(>F)"]][i]))
out <- list(
  call = "lmerTest::lmer(y ~ A * B + A * x + (1 | g), d); anova(fit, type = 3, ddf = ...)",
  versions = list(R = R.version.string, lmerTest = as.character(packageVersion("lmerTest")),
                  pbkrtest = as.character(packageVersion("pbkrtest"))),
  theta = unname(getME(fit, "theta")),
  logLik = as.numeric(logLik(fit)),
  satterthwaite = rows(a3), kenward_roger = rows(kr))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "contained_terms.json")
