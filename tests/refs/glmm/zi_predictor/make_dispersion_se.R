# Standard errors of glmmTMB's dispersion parameter (betad = log theta for nbinom2,
# log shape for Gamma) for G05b, G15 and G17b (fitted as in make_glmm_refs.R).
# Run: cd tests/refs/glmm && Rscript zi_predictor/make_dispersion_se.R
suppressPackageStartupMessages({library(glmmTMB); library(jsonlite)})
source("glmm_ref_utils.R")
ara <- read.csv("data/Arabidopsis_f.csv", stringsAsFactors = FALSE)
lev <- fromJSON("data/Arabidopsis_f.levels.json")$factors
for (f in names(lev)) ara[[f]] <- factor(ara[[f]], levels = lev[[f]]$levels)
ara$gen <- factor(ara$gen)
sg <- read.csv("data/sim_gamma.csv"); sg$g <- factor(sg$g)
se_betad <- function(fit) {
  v <- vcov(fit, full = TRUE)
  sqrt(v[grep("^d~", rownames(v)), grep("^d~", colnames(v))])
}
fits <- list(
  G05b_arabidopsis_nbinom2_int_glmmTMB = glmmTMB(total.fruits ~ nutrient * amd + rack + status +
    (1 | popu) + (1 | popu:gen), data = ara, family = nbinom2),
  G15_simgamma_log_glmmTMB = glmmTMB(y ~ x + (1 | g), data = sg, family = Gamma(link = "log")),
  G17b_simgamma_inverse_glmmTMB_start = glmmTMB(y ~ x + (1 | g), data = sg,
    family = Gamma(link = "inverse"), start = list(beta = c(0.3, 0))))
out <- lapply(fits, function(f) list(logLik = as.numeric(logLik(f)), betad = unname(fixef(f)$disp),
                                     betad_se = unname(se_betad(f))))
write_json(out, "zi_predictor/dispersion_se.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
