#!/bin/sh
# Regenerate every reference in tests/refs/inference/ (about 3-4 minutes on 2 cores).
set -e
cd "$(dirname "$0")"
Rscript make_machines_copy.R
Rscript make_sleepstudy.R
Rscript make_orthodont.R
Rscript make_penicillin.R
Rscript make_arabidopsis.R
Rscript make_nlme_intervals.R
Rscript make_bootstrap.R
timeout 900 Rscript make_timing.R   # needs the arabidopsis JSONs; 15-minute cap
