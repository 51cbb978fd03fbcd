## Reference Laplace fits of GLMMs for tests/test_glmm_laplace.py.
##
## Each case is fitted by glmmTMB (the exact Laplace approximation, Hessian by
## automatic differentiation) and by lme4's glmer (whose Laplace objective uses
## the working weights of PIRLS's previous iterate in log det(L), so its logLik
## sits slightly below the exact one and its Hessian-based SEs differ by ~1%).
## Data: the CSVs beside this script (round2 copies of lme4's cbpp and
## Arabidopsis, glmmTMB's Owls) with their factor levels in *.levels.json.
## Run from this folder: Rscript make_laplace_refs.R
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(jsonlite)})

read_data <- function(name) {
  d <- read.csv(paste0(name, ".csv"))
  info <- fromJSON(paste0(name, ".levels.json"))$factors
  for (col in names(info)) {
    d[[col]] <- factor(as.character(d[[col]]), levels = as.character(info[[col]]$levels),
                       ordered = isTRUE(info[[col]]$ordered))
  }
  d
}

summarise <- function(name, formula, data_name, family, lme4_fit, tmb_fit) {
  se_tmb <- sqrt(diag(vcov(tmb_fit)$cond))
  vc <- VarCorr(tmb_fit)$cond
  sds <- lapply(vc, function(m) as.list(attr(m, "stddev")))
  cors <- lapply(vc, function(m) { r <- attr(m, "correlation"); r[lower.tri(r)] })
  list(
    name = name, formula = formula, data = paste0(data_name, ".csv"), family = family$family,
    link = family$link, nobs = nobs(tmb_fit),
    glmmTMB = list(logLik = as.numeric(logLik(tmb_fit)), df = attr(logLik(tmb_fit), "df"),
                   AIC = AIC(tmb_fit), BIC = BIC(tmb_fit), fixef = as.list(fixef(tmb_fit)$cond),
                   se = as.list(se_tmb), sd = sds, corr = cors,
                   pdHess = tmb_fit$sdr$pdHess,
                   vcov = unname(as.matrix(vcov(tmb_fit)$cond))),
    lme4 = list(logLik = as.numeric(logLik(lme4_fit)), AIC = AIC(lme4_fit), BIC = BIC(lme4_fit),
                fixef = as.list(fixef(lme4_fit)), se = as.list(sqrt(diag(as.matrix(vcov(lme4_fit))))),
                theta = as.list(getME(lme4_fit, "theta")),
                messages = lme4_fit@optinfo$conv$lme4$messages),
    versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                    glmmTMB = as.character(packageVersion("glmmTMB")))
  )
}

cases <- list(
  list("cbpp_logit", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", binomial()),
  list("cbpp_probit", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", binomial("probit")),
  list("cbpp_cloglog", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", binomial("cloglog")),
  list("arabidopsis_poisson", "total.fruits ~ nutrient + rack + status + amd + (1 | popu) + (1 | gen)",
       "Arabidopsis_f", poisson()),
  list("owls_offset", "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)",
       "Owls", poisson()),
  list("sim_three_slopes", "y ~ x1 + x2 + (x1 + x2 | g)", "sim_three_slopes", poisson()),
  list("owls_slope", "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 + FoodTreatment | Nest)",
       "Owls", poisson())
)
for (case in cases) {
  d <- read_data(case[[3]])
  f <- as.formula(case[[2]])
  tmb <- glmmTMB(f, data = d, family = case[[4]])
  l4 <- suppressWarnings(glmer(f, data = d, family = case[[4]]))
  out <- summarise(case[[1]], case[[2]], case[[3]], case[[4]], l4, tmb)
  write_json(out, paste0(case[[1]], ".json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
  cat(case[[1]], out$glmmTMB$logLik, out$lme4$logLik, "\n")
}
