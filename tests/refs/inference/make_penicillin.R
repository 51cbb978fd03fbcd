# Case 4: Penicillin  diameter ~ 1 + (1 | plate) + (1 | sample), REML (crossed random intercepts).
# Run from tests/refs/inference/:  Rscript make_penicillin.R
source("common.R")

Penicillin <- lme4::Penicillin
write_dataset(Penicillin, "Penicillin", "lme4::Penicillin (all 144 rows, as shipped)")
ds <- list(name = "Penicillin", file = "Penicillin.csv", levels_file = "Penicillin.levels.json",
           source = "lme4::Penicillin", nrow = nrow(Penicillin))

call <- "lmerTest::lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = Penicillin, REML = TRUE)"
fm <- fit_model(call)
fit <- fm$fit
res <- c(list(case = "penicillin_crossed_reml",
              description = "Penicillin crossed random intercepts (plate, sample), REML: Sat/KR summary, profile/Wald confint, ranova, vcovAdj",
              engine = "lmerTest::lmer (lme4)", versions = versions(), dataset = ds,
              call = call, fit_info = fm$info),
         merMod_basics(fit),
         lmm_items(fit, c("sat", "kr", "profile", "wald", "ranova", "vcovadj")))
res$confint_note <- "level 0.95; oldNames = FALSE row names; Wald gives NA (null) for the variance rows"
res$status <- status_of(res)
save_json(res, "penicillin_crossed_reml.json")
