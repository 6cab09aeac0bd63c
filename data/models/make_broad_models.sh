#!/bin/bash
# The broad-domain Paynes shipped as broad-payne-{blue,green,red,ir,rvs} (the set "broad"; data/models/RECIPE.md):
# for each window, a Payne 300-300 SiLU trained on the 10,240-row broad grid of make_broad_grids.sh (its last
# stage), its error model from the held-out test grid, and its label-space systematics. Resumable: rerun.
#
#   data/models/make_broad_models.sh [GRID_DIR] [MODEL_DIR]    (defaults: benchmarks/work/broad, GRID_DIR/models)
#   MINUTES=10 STARS=300 WINDOWS="galah-red galah-green" data/models/make_broad_models.sh
set -u
GRIDS=${1:-benchmarks/work/broad}
MODELS=${2:-$GRIDS/models}
S=${STELLARINF:-stellarinf}
MINUTES=${MINUTES:-10}
STARS=${STARS:-300}  # the systematics' noiseless synthesizer stars
WINDOWS=${WINDOWS:-galah-red galah-green galah-ir galah-blue gaia-rvs}
mkdir -p "$MODELS"
short() { case $1 in galah-*) echo "${1#galah-}" ;; gaia-rvs) echo rvs ;; esac; }
for w in $WINDOWS; do
  m="$MODELS/broad-payne-$(short "$w")"
  echo "$(date -Is) $w -> $m"
  # the budget schedule: the peak rate, then a decay over the last 20 % of the minutes (it ends with the budget)
  "$S" train --grid "$GRIDS/broad_$w.h5" --model payne --hidden 300,300 --activation silu --schedule budget \
    --max-minutes "$MINUTES" --max-steps 1000000 --validate-every 500 --patience 0 --seed 0 --quiet -o "$m" || exit 1
  "$S" error-model "$m" --grid "$GRIDS/broad_${w}_test.h5" --modes 28 --max-spectra 512 --quiet || exit 1
  "$S" systematics "$m" --stars "$STARS" --seed 1 --quiet || exit 1
  # its Cramér–Rao fidelity against the synthesizer (seven reference stars; 80-190 s): fits flag what it over-claims
  "$S" fidelity "$m" --snr 100 --quiet || exit 1
done
echo "$(date -Is) done: copy each model's model.json, weights.eqx and error_modes.npy to data/models/"
