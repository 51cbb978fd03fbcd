# Case 5: Arabidopsis (round2's Arabidopsis_f.csv: nutrient, rack as factors; gen integer ->
# grouping factor via popu/gen).
#  a) log(1 + total.fruits) ~ rack + nutrient + amd + status + (nutrient | popu/gen), REML:
#     Sat and KR summaries, anova type 3 and 1 (Sat and KR), profile confint (timed), ranova.
#  b) same fixed part with (1 | popu/gen), ML: Sat summary, anova type 3, profile confint (timed), ranova.
# Arabidopsis_f.csv / .levels.json are copied unchanged from /work/shared/refs/round2/data/.
# Run from tests/refs/inference/:  Rscript make_arabidopsis.R
source("common.R")

src <- "/work/shared/refs/round2/data"
if (dir.exists(src)) {
  stopifnot(all(file.copy(file.path(src, c("Arabidopsis_f.csv", "Arabidopsis_f.levels.json")), ".", overwrite = TRUE)))
  Sys.chmod(c("Arabidopsis_f.csv", "Arabidopsis_f.levels.json"), "644")
}

Arabidopsis <- read_dataset("Arabidopsis_f.csv", "Arabidopsis_f.levels.json")
# check against lme4's own copy
A0 <- lme4::Arabidopsis
A0$nutrient <- factor(A0$nutrient); A0$rack <- factor(A0$rack)
same_as_lme4 <- isTRUE(all.equal(Arabidopsis$total.fruits, A0$total.fruits)) &&
  all(vapply(c("reg", "popu", "rack", "nutrient", "amd", "status"), function(v)
    identical(as.character(Arabidopsis[[v]]), as.character(A0[[v]])) &&
      identical(levels(Arabidopsis[[v]]), levels(A0[[v]])), TRUE)) &&
  identical(as.integer(Arabidopsis$gen), as.integer(as.character(A0$gen)))
ds <- list(name = "Arabidopsis_f", file = "Arabidopsis_f.csv", levels_file = "Arabidopsis_f.levels.json",
           source = "lme4::Arabidopsis with nutrient <- factor(nutrient), rack <- factor(rack) (round2 copy)",
           nrow = nrow(Arabidopsis), identical_to_lme4_Arabidopsis = same_as_lme4,
           note = "gen is integer in the CSV; popu/gen makes the grouping factors popu and gen:popu")

fixed <- "log(1 + total.fruits) ~ rack + nutrient + amd + status"
cases <- list(
  list(case = "arabidopsis_nutrient_popu_gen_reml", REML = TRUE,
       random = "(nutrient | popu/gen)",
       items = c("sat", "kr", "anova3_sat", "anova3_kr", "anova1_sat", "anova1_kr", "profile", "ranova"),
       desc = "case 5a: correlated random intercept + nutrient effect for popu and gen:popu, REML"),
  list(case = "arabidopsis_intercept_popu_gen_ml", REML = FALSE,
       random = "(1 | popu/gen)",
       items = c("sat", "anova3_sat", "profile", "ranova"),
       desc = "case 5b: nested random intercepts popu and gen:popu, ML")
)

for (cs in cases) {
  call <- sprintf("lmerTest::lmer(%s + %s, data = Arabidopsis, REML = %s)", fixed, cs$random, cs$REML)
  fm <- fit_model(call)
  fit <- fm$fit
  res <- c(list(case = cs$case, description = paste("Arabidopsis", fixed, "+", cs$random, "-", cs$desc),
                engine = "lmerTest::lmer (lme4)", versions = versions(), dataset = ds,
                call = call, fit_info = fm$info),
           merMod_basics(fit),
           lmm_items(fit, cs$items))
  res$confint_profile_elapsed_s <- res$confint_profile$elapsed_s
  res$confint_note <- "level 0.95; oldNames = FALSE row names; elapsed_s is system.time()[['elapsed']] of the confint call alone"
  res$status <- status_of(res)
  save_json(res, paste0(cs$case, ".json"))
  cat(cs$case, ": profile elapsed", res$confint_profile$elapsed_s, "s\n")
}
