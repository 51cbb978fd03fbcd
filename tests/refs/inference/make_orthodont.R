# Case 3: Orthodont  distance ~ age * Sex + (age | Subject)  and  + (1 | Subject), REML.
# Case 6: Orthodont with ageF = factor(age), distance ~ ageF * Sex + (1 | Subject), REML,
#         rows 3, 10, 17, 40 (1-based, nlme's row order) dropped -> unbalanced type III test.
# Run from tests/refs/inference/:  Rscript make_orthodont.R
source("common.R")

Orthodont <- as.data.frame(nlme::Orthodont)   # Subject: ordered factor (nlme's level order)
write_dataset(Orthodont, "Orthodont", "nlme::Orthodont (groupedData -> data.frame; Subject is an ordered factor)",
              note = "an ordered grouping factor only fixes the level order; lmer treats it as an ordinary grouping factor")
ds_full <- list(name = "Orthodont", file = "Orthodont.csv", levels_file = "Orthodont.levels.json",
                source = "nlme::Orthodont", nrow = nrow(Orthodont))

dropped <- c(3L, 10L, 17L, 40L)
OrthoUnbal <- Orthodont[-dropped, ]
OrthoUnbal$ageF <- factor(OrthoUnbal$age)
write_dataset(OrthoUnbal, "Orthodont_unbalanced",
              "nlme::Orthodont[-c(3, 10, 17, 40), ] with ageF = factor(age) added",
              note = "rows 3, 10, 17, 40 of nlme::Orthodont (1-based) dropped; ageF levels 8, 10, 12, 14")
ds_unbal <- list(name = "Orthodont_unbalanced", file = "Orthodont_unbalanced.csv",
                 levels_file = "Orthodont_unbalanced.levels.json",
                 source = "nlme::Orthodont[-c(3, 10, 17, 40), ]; ageF <- factor(age)",
                 dropped_rows_1based = I(dropped),
                 dropped_rows = drecs(Orthodont[dropped, ]),
                 nrow = nrow(OrthoUnbal))

cases <- list(
  list(case = "orthodont_age_sex_slope_reml", data = "Orthodont", ds = ds_full,
       formula = "distance ~ age * Sex + (age | Subject)",
       items = c("sat", "kr", "anova3_sat", "anova3_kr", "anova1_sat", "anova1_kr", "ranova", "vcovadj"),
       desc = "case 3: correlated random intercept and age slope"),
  list(case = "orthodont_age_sex_intercept_reml", data = "Orthodont", ds = ds_full,
       formula = "distance ~ age * Sex + (1 | Subject)",
       items = c("sat", "kr", "anova3_sat", "anova3_kr", "anova1_sat", "anova1_kr", "ranova", "vcovadj"),
       desc = "case 3: random intercept"),
  list(case = "orthodont_ageF_sex_unbalanced_reml", data = "OrthoUnbal", ds = ds_unbal,
       formula = "distance ~ ageF * Sex + (1 | Subject)",
       items = c("sat", "kr", "anova3_sat", "anova3_kr", "anova1_sat", "anova1_kr"),
       desc = "case 6: factor-by-factor interaction, unbalanced (4 rows dropped); type III vs type I")
)

for (cs in cases) {
  call <- sprintf("lmerTest::lmer(%s, data = %s, REML = TRUE)", cs$formula, cs$data)
  fm <- fit_model(call)
  fit <- fm$fit
  res <- c(list(case = cs$case, description = paste("Orthodont", cs$formula, "-", cs$desc),
                engine = "lmerTest::lmer (lme4)", versions = versions(), dataset = cs$ds,
                call = call, fit_info = fm$info),
           merMod_basics(fit),
           lmm_items(fit, cs$items))
  res$anova_note <- "lmerTest anova: type 3 uses its own marginal contrasts (independent of the contrasts option for the hypotheses); type 1 is sequential"
  res$status <- status_of(res)
  save_json(res, paste0(cs$case, ".json"))
}
