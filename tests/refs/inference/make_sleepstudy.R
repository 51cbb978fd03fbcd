# Cases 1 and 2: sleepstudy, random slope (correlated) and random intercept, REML and ML.
# Run from tests/refs/inference/:  Rscript make_sleepstudy.R
source("common.R")

sleepstudy <- lme4::sleepstudy
write_dataset(sleepstudy, "sleepstudy", "lme4::sleepstudy (all 180 rows, as shipped)")
dataset <- list(name = "sleepstudy", file = "sleepstudy.csv", levels_file = "sleepstudy.levels.json",
                source = "lme4::sleepstudy", nrow = nrow(sleepstudy))

cases <- list(
  list(case = "sleepstudy_slope_reml", REML = TRUE,
       formula = "Reaction ~ Days + (Days | Subject)", desc = "case 1 (REML)"),
  list(case = "sleepstudy_slope_ml", REML = FALSE,
       formula = "Reaction ~ Days + (Days | Subject)", desc = "case 1 (ML)"),
  list(case = "sleepstudy_intercept_reml", REML = TRUE,
       formula = "Reaction ~ Days + (1 | Subject)", desc = "case 2 (REML)"),
  list(case = "sleepstudy_intercept_ml", REML = FALSE,
       formula = "Reaction ~ Days + (1 | Subject)", desc = "case 2 (ML)")
)

for (cs in cases) {
  call <- sprintf("lmerTest::lmer(%s, data = sleepstudy, REML = %s)", cs$formula, cs$REML)
  fm <- fit_model(call)
  fit <- fm$fit
  res <- c(list(case = cs$case,
                description = paste("sleepstudy", cs$formula, cs$desc,
                                    "- lmerTest Satterthwaite/KR summaries, type 3/1 anova, profile/Wald confint, ranova, drop1, pbkrtest vcovAdj"),
                engine = "lmerTest::lmer (lme4)", versions = versions(), dataset = dataset,
                call = call, fit_info = fm$info),
           merMod_basics(fit),
           lmm_items(fit, ALL_ITEMS))
  res$confint_note <- "level 0.95; oldNames = FALSE row names (sd_<term>|<group>, cor_<t1>.<t2>|<group>, sigma); Wald gives NA (null) for the variance rows"
  res$status <- status_of(res)
  save_json(res, paste0(cs$case, ".json"))
}
