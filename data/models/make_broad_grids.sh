#!/bin/bash
# The broad-domain grids of data/models/RECIPE.md (issue #18 item 6), in stages so that each finished stage is a
# usable slice: 2,048 rows in every window, the 1,024-row test grids, the simple-fidelity grids (minutes each: they come
# before the hours of the next stage), then 10,240 rows.
# Row i of every window's file is one star (same --n, --design, --seed and label options).
# Oversampled 2x (every half-pixel point too) so TransformerPayne can learn the flux between pixels.
# Resumable and extendable: rerun the script. Niced, so other work keeps the cores.
#
#   data/models/make_broad_grids.sh [OUTPUT_DIR]     (default: benchmarks/work/broad; a log goes to OUTPUT_DIR/make.log)
set -u
OUT=${1:-benchmarks/work/broad}
mkdir -p "$OUT" && cd "$OUT" || exit 1
S=${STELLARINF:-stellarinf}
BOX="--elements galah --alpha --label-box feh=-2.5:0.5"
W="galah-blue galah-green galah-red galah-ir gaia-rvs"
run() { echo "$(date -Is) start $*"; nice -n 19 "$S" grid --no-progress "$@" || echo "$(date -Is) FAILED $*"; echo "$(date -Is) done $1 $2"; }
{
for w in $W; do run -o broad_$w.h5 --n 2048 --design sobol --seed 101 --window $w $BOX --molecules on --oversample 2; done
for w in $W; do run -o broad_${w}_test.h5 --n 1024 --design sobol --seed 102 --window $w $BOX --molecules on --oversample 2; done
for w in $W; do run -o broad_${w}_simple.h5 --n 51200 --design sobol --seed 103 --window $w $BOX --fidelity simple --oversample 2; done
for w in $W; do run -o broad_$w.h5 --n 10240 --design sobol --seed 101 --window $w $BOX --molecules on --oversample 2; done
echo "$(date -Is) all done"
} >> make.log 2>&1
