#!/usr/bin/env bash
# Converged GB rows (docs/md.md, "GB to convergence"), one core, in turn per model:
# well-tempered metadynamics on the scored residue's (phi, psi) for 3.2 ns (as the explicit-solvent
# run), then two static-bias walkers under its frozen bias, reweighted exactly when the GB rows are
# built. Run from the repository root, detached:
#     mkdir -p logs && setsid nohup bash scripts/queue-gb.sh >> logs/queue-gb.log 2>&1 < /dev/null &
# Every command resumes its run from its checkpoint, so re-running the script continues it.
# GB_SYSTEM (default ala2; ala3, ala6) picks the peptide, GB_MODELS the models (default "obc2 obc1"
# for ala2, "obc2" otherwise; e.g. GB_MODELS=obc1 for a second core), GB_STATIC_NS the walkers'
# length (default 100 ns for ala2, whose GB floor target needs ~170 ns per model, docs/md.md;
# 16 otherwise). A run another process is writing is refused (its lock), which stops this script.
set -eu
SYSTEM=${GB_SYSTEM:-ala2}
if [ "$SYSTEM" = ala2 ]; then MODELS=${GB_MODELS:-obc2 obc1} NS=${GB_STATIC_NS:-100}
else MODELS=${GB_MODELS:-obc2} NS=${GB_STATIC_NS:-16}; fi
for model in $MODELS; do
    case "$SYSTEM/$model" in
        ala2/obc2) seed=31 ;; ala2/obc1) seed=41 ;; ala3/obc2) seed=121 ;; ala6/obc2) seed=221 ;;
        *) echo "queue-gb.sh: no seeds for $SYSTEM $model" >&2; exit 2 ;;
    esac
    cgbg-bench md run --system "$SYSTEM" --solvent "$model" --bias wtmetad --ns 3.2 --chunk-ps 400 \
        --threads 1 --seed "$seed" --out "data/$SYSTEM/$model-wtmetad" >> "logs/$SYSTEM-$model-wtmetad.log" 2>&1
    for walker in 1 2; do
        cgbg-bench md run --system "$SYSTEM" --solvent "$model" --bias static --bias-from "data/$SYSTEM/$model-wtmetad" \
            --ns "$NS" --chunk-ps 2000 --threads 1 --seed $((seed + walker)) \
            --out "data/$SYSTEM/$model-static-$walker" >> "logs/$SYSTEM-$model-static-$walker.log" 2>&1
    done
done
