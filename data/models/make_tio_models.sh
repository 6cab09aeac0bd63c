#!/bin/bash
# A broad-domain Payne with TiO (data/models/RECIPE.md, fiftieth session): the first 2,048 rows of the broad design
# synthesised with --molecules on+tio (and 512 test rows), then the shipped broad-payne-<arm> (trained on 10,240 rows
# without TiO) fine-tuned on them: only the cool corner's spectra differ, so it keeps what it learned elsewhere and
# learns the bands. Then its error model, label systematics and Cramér-Rao fidelity. Resumable: rerun.
#
#   data/models/make_tio_models.sh [WORK_DIR]     (default: benchmarks/work/broad_tio; log: WORK_DIR/make_tio.log)
#   WINDOWS="galah-green galah-blue" MINUTES=8 STARS=150 data/models/make_tio_models.sh
#   CORNER=1024 data/models/make_tio_models.sh   # and CORNER rows of the cool corner (Teff 4000-4800 K, where the
#                                                # bands are; seed 103), fine-tuned on together with the 2,048
#
# Cost on the 2-core CPU (galah-red): the 2,048 rows ~36 min (0.8 rows/s below 5500 K, where every TiO line is kept),
# the 512 test rows ~12 min, the fine-tune 8 min. Install model.json, weights.eqx and error_modes.npy of
# WORK_DIR/models/broad-payne-<arm> into data/models/broad-payne-<arm>/ once benchmarks/tio_model.py and the observed
# Sun (benchmarks/sun_fit.py) agree.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-$REPO/benchmarks/work/broad_tio}
S=${STELLARINF:-stellarinf}
MINUTES=${MINUTES:-8}
STARS=${STARS:-150}
WINDOWS=${WINDOWS:-galah-red}
CORNER=${CORNER:-0}
BOX="--elements galah --alpha --label-box feh=-2.5:0.5 --molecules on+tio --oversample 2"
mkdir -p "$WORK/models" && cd "$WORK" || exit 1
short() { case $1 in galah-*) echo "${1#galah-}" ;; gaia-rvs) echo rvs ;; esac; }
{
for w in $WINDOWS; do
  m="models/broad-payne-$(short "$w")"
  echo "$(date -Is) $w -> $m"
  "$S" grid --no-progress -o "broad_${w}_2k.h5" --n 2048 --design sobol --seed 101 --window "$w" $BOX || exit 1
  "$S" grid --no-progress -o "broad_${w}_test512.h5" --n 512 --design sobol --seed 102 --window "$w" $BOX || exit 1
  grids="--grid broad_${w}_2k.h5"
  if [ "$CORNER" -gt 0 ]; then
    "$S" grid --no-progress -o "broad_${w}_cool${CORNER}.h5" --n "$CORNER" --design sobol --seed 103 --window "$w" \
      $BOX --label-box teff=4000:4800 || exit 1
    grids="$grids --grid broad_${w}_cool${CORNER}.h5"
  fi
  # fine-tuning: a third of the from-scratch peak rate, the budget schedule, the best validation kept
  "$S" train $grids --model payne --hidden 300,300 --activation silu \
    --init "$REPO/data/models/broad-payne-$(short "$w")" --lr 3e-4 --schedule budget --max-minutes "$MINUTES" \
    --max-steps 1000000 --validate-every 500 --patience 0 --seed 0 --quiet -o "$m" || exit 1
  "$S" error-model "$m" --grid "broad_${w}_test512.h5" --modes 28 --max-spectra 512 --quiet || exit 1
  "$S" systematics "$m" --stars "$STARS" --seed 1 --quiet || exit 1
  "$S" fidelity "$m" --snr 100 --quiet || exit 1
  python "$REPO/benchmarks/tio_model.py" "broad_${w}_test512.h5" "broad-payne-$(short "$w")" "$m" \
    --out "$REPO/benchmarks/results/tio_model_$(short "$w").json" || exit 1
done
echo "$(date -Is) done"
} >> make_tio.log 2>&1
