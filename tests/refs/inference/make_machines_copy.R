# Case 7: copy round2's Machines references and data unchanged into tests/refs/inference/.
# (Their `dataset.file` fields say data/Machines.csv; here the CSV sits next to the JSON.)
# Run from tests/refs/inference/:  Rscript make_machines_copy.R
src <- "/work/shared/refs/round2"
files <- c(file.path(src, "refs", c("C1_machines_lmertest.json", "C2_machines_ranova.json")),
           file.path(src, "data", c("Machines.csv", "Machines.levels.json")))
ok <- file.copy(files, ".", overwrite = TRUE, copy.date = TRUE)
stopifnot(all(ok))
Sys.chmod(basename(files), "644")
for (f in basename(files)) stopifnot(unname(tools::md5sum(f)) == unname(tools::md5sum(files[basename(files) == f])))
cat("copied:", basename(files), "\n")
