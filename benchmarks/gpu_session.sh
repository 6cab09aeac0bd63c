#!/usr/bin/env bash
# One prepared call on a lent GPU machine (15 minutes of device time per task, 10 per command): the checks
# that need an accelerator, each under its own time limit so one failure or overrun cannot cost the others,
# results packed into $OUT after every stage so a killed command still brings back what finished.
#
#   1. accuracy  (#19) TransformerPayne vs the Payne on the broad galah-red grid, equal GPU budgets,
#                the budget schedule; the trained models come back (benchmarks/accuracy.py)
#   2. fit       (#20) batch MAP + Laplace stars/s on one GPU (benchmarks/inference_speed.py, vmap path)
#   3. synth     (#18) realistic `stellarinf grid` spectra/s on the GPU (three batches of 64: compile, steady)
#   4. throughput      forward pixels/s, Jacobians, % of the measured matmul peak (benchmarks/throughput.py)
#   5. broad     (#19) a TransformerPayne per GALAH arm on the broad 2,048-row grids, the four trained at once
#                on the one GPU (`stellarinf train`, budget schedule); the models come back as
#                models/broad-tp-{arm} (STAGES=broad; gpu_carry/{blue,green,red,ir}.h5 packed --no-continuum)
#   6. sun       (#19, #21) the observed Sun's four GALAH arms in one fit through a model set (SUN_SET, default
#                broad-tp) at S/N 50, 100, 200: the numbers and a four-arm fit's time on the GPU (STAGES=sun;
#                the Kurucz atlas files in gpu_carry/atlas, the set's models in data/models)
#
# Needs, in the working tree: gpu_carry/red.h5 and red_test.h5 (benchmarks/gpu_grids.py pack of the broad
# galah-red grids; for the broad stage gpu_carry/{blue,green,red,ir}.h5, packed with --no-continuum) and .whl/ (astropy, pyerfa, astropy-iers-data, arviz, xarray-einstats, h5netcdf,
# blackjax, platformdirs: what the machine's image lacks). Sizes are environment variables, so the same
# script runs on this CPU in seconds as a rehearsal:
#   PY=.venv/bin/python OUT=/tmp/gpu_out ACC_MIN=0.1 FIT_BATCHES="4" SYNTH_N=4 THROUGHPUT=quick benchmarks/gpu_session.sh
#
# Before the call, here: the tree that travels must stay under 64 MiB.
#   python benchmarks/gpu_grids.py pack benchmarks/work/broad/broad_galah-red.h5 gpu_carry/red.h5   # and _test
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#       astropy pyerfa astropy-iers-data arviz xarray-einstats h5netcdf blackjax platformdirs
#   .git/info/exclude: /.whl/ and /gpu_carry/; the tracked files are ~47 MB, so for the call untrack what the
#   machine does not need (git rm -r -q --cached benchmarks/results data/models/payne-mlp-{blue,green,ir,rvs},
#   those paths in .git/info/exclude too) and restore the index after it (git reset -q).
# The call: command "bash benchmarks/gpu_session.sh", carry .whl and gpu_carry, timeout ~590 s; the machine
# stays warm for 30 s, so a second call (STAGES=...) must follow at once.
# Seen on one H200 (thirty-fourth session): set-up and unpacking 10 s; accuracy at ACC_MIN=2 260 s; fit with
# batches 16 and 64 190 s (each vmapped batch width compiles for about a minute: 512 did not fit in 150 s);
# synth 40 s. Thirty-sixth session, STAGES=broad BROAD_MIN=7 (carry .whl and gpu_carry: 54 MB, the four arms
# packed --no-continuum 7-12 MB each): 470 s in all, each arm 100,000 steps of 64 spectra (240 steps/s each while
# sharing the GPU, utilisation 100 %), 506 s of device time with the start.
# The 10,240-row grids (fortieth session) coded as differences are 27-45 MB an arm: pack them with principal
# components instead (--no-continuum --step 2e-4 --pca 256: blue 25.1, green 16.5, red 14.7, IR 13.2 MB; max error
# 1e-4) and carry two arms a call (BROAD_ARMS="blue ir", then "green red" at once while the machine is warm).
# `python benchmarks/gpu_results.py RUN_DIR...` files what came back.
set -u
OUT=${OUT:-/tmp/gpu_out}
PY=${PY:-python3}
ACC_MIN=${ACC_MIN:-2.0}          # minutes per model
TP_PRESET=${TP_PRESET:-small}    # TransformerPayne size (tiny, small, paper)
FIT_BATCHES=${FIT_BATCHES:-"16 64"}
SYNTH_N=${SYNTH_N:-192}
THROUGHPUT=${THROUGHPUT:-full}
STAGES=${STAGES:-"accuracy fit synth"}  # throughput: a second call, if device time is left
BROAD_MIN=${BROAD_MIN:-7}      # minutes per arm (the four arms train at the same time)
BROAD_ARMS=${BROAD_ARMS:-"blue green red ir"}
BROAD_BATCH=${BROAD_BATCH:-64}   # spectra per step (a GPU step costs about the same at 32 and 64)
SUN_SET=${SUN_SET:-broad-tp}
SUN_SNR=${SUN_SNR:-50,100,200}
WORK=/tmp/stellarinf_gpu
RES=$WORK/res  # packed into $OUT/results.tgz: $OUT brings back at most 8 files
mkdir -p "$OUT" "$RES" "$WORK"
LOG=$OUT/log.txt
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 XLA_PYTHON_CLIENT_PREALLOCATE=false

log() { echo "== $* [$(date -u +%T)]" | tee -a "$LOG"; }
pack() { tar czf "$OUT/results.tgz.tmp" -C "$RES" --exclude='checkpoint*' --exclude='*.ckpt*' . && mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"; }
stage() {  # stage NAME LIMIT_S CMD...
    local name=$1 limit=$2 t0 rc wall
    shift 2
    log "$name start (limit ${limit} s)"
    t0=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    wall=$(awk "BEGIN{print $(date +%s.%N) - $t0}")
    log "$name rc=$rc wall=$wall s"
    echo "$name rc=$rc wall=$wall" >>"$RES/stages.txt"
    pack
}

# --- set-up: the missing packages, the package itself, a `stellarinf` that works either way
if [ -d .whl ] && [ "$PY" = python3 ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
printf '#!/bin/sh\nexec %s -c "import sys; from stellarinf.cli import main; sys.argv[0] = \\"stellarinf\\"; main()" "$@"\n' "$PY" >"$WORK/si"
chmod +x "$WORK/si"
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
    $PY -c "import jax, equinox, numpyro, stellarinf; print('jax', jax.__version__, jax.devices(), 'equinox', equinox.__version__, 'numpyro', numpyro.__version__)"
} >>"$LOG" 2>&1
case " $STAGES " in *" accuracy "*)
    $PY benchmarks/gpu_grids.py unpack gpu_carry/red.h5 "$WORK/red.h5" >>"$LOG" 2>&1
    $PY benchmarks/gpu_grids.py unpack gpu_carry/red_test.h5 "$WORK/red_test.h5" >>"$LOG" 2>&1
    ;;
esac

for s in $STAGES; do
    case $s in
    accuracy)
        lim=$(awk "BEGIN{printf \"%d\", $ACC_MIN * 120 + 120}")
        stage accuracy "$lim" $PY benchmarks/accuracy.py --grid "$WORK/red.h5" --test-grid "$WORK/red_test.h5" \
            --sizes 1792 --models transformer-payne,payne-silu --max-minutes "$ACC_MIN" --schedule budget \
            --preset "$TP_PRESET" \
            --validate-every 500 --quiet --workdir "$RES/accuracy_work" -o "$RES/accuracy_broad_red_gpu.json"
        ;;
    fit)
        # shellcheck disable=SC2086
        stage fit "${FIT_LIMIT:-240}" $PY benchmarks/inference_speed.py --emulator default-payne --samplers --n-map 3 \
            --batch $FIT_BATCHES --batch-modes vmap --output "$RES/inference_speed_gpu.json"
        ;;
    synth)
        # one run of three batches: the progress bar's lines give the first batch (compiles) and the steady ones
        TQDM_DISABLE= stage synth 150 "$WORK/si" grid -o "$RES/synth.h5" --window galah-red --n "$SYNTH_N" \
            --seed 7 --elements galah --alpha --label-box feh=-2.5:0.5 --molecules on --oversample 2 --batch-size 64
        rm -f "$RES/synth.h5"
        ;;
    throughput)
        if [ "$THROUGHPUT" = quick ]; then
            stage throughput 60 $PY benchmarks/throughput.py --quick --synth none -o "$RES/throughput_gpu.json"
        else
            stage throughput 120 $PY benchmarks/throughput.py --synth realistic --emulator default-payne \
                -o "$RES/throughput_gpu.json"
        fi
        ;;
    broad)
        # one script that starts the arms' trainings side by side and waits for all of them (each writes its
        # model when its budget ends; the stage's limit leaves room for the last validation and the save)
        {
            for a in $BROAD_ARMS; do
                echo "( $PY benchmarks/gpu_grids.py unpack gpu_carry/$a.h5 $WORK/broad_$a.h5 && $WORK/si train \\"
                echo "  --grid $WORK/broad_$a.h5 --model transformer-payne --preset $TP_PRESET --schedule budget \\"
                echo "  --max-minutes $BROAD_MIN --max-steps 100000000 --batch-spectra $BROAD_BATCH --validate-every 1000 \\"
                echo "  --patience 0 --seed 0 --quiet -o $RES/models/broad-tp-$a ) >$RES/train_$a.log 2>&1 &"
            done
            echo wait
        } >"$WORK/broad.sh"
        mkdir -p "$RES/models"
        lim=$(awk "BEGIN{printf \"%d\", $BROAD_MIN * 60 + 150}")
        # the GPU's utilisation every 20 s while the arms share it
        (while sleep 20; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done) \
            >"$RES/gpu_utilisation.txt" 2>&1 &
        sampler=$!
        stage broad "$lim" bash "$WORK/broad.sh"
        kill "$sampler" 2>/dev/null
        ;;
    sun)
        stage sun "${SUN_LIMIT:-420}" $PY benchmarks/sun_fit.py --atlas-dir gpu_carry/atlas --emulators "$SUN_SET" \
            --together --snr "$SUN_SNR" --seeds 0 --windows galah-blue,galah-green,galah-red,galah-ir \
            -o "$RES/sun_fit_${SUN_SET//-/_}_four_arms_gpu.json"
        ;;
    esac
done
log done
