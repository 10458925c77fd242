#!/usr/bin/env bash
# Converged GB rows for ala2 (docs/md.md, "GB to convergence"), one core, in turn per model:
# well-tempered metadynamics on (phi, psi) for 3.2 ns (as the explicit-solvent run), then two
# static-bias walkers under its frozen bias, reweighted exactly when the GB rows are built.
# Run from the repository root, detached:
#     mkdir -p logs && setsid nohup bash scripts/queue-gb.sh >> logs/queue-gb.log 2>&1 < /dev/null &
# Every command resumes its run from its checkpoint, so re-running the script continues it.
# GB_MODELS (default "obc2 obc1") picks the models, e.g. GB_MODELS=obc1 for a second core; a run
# another process is writing is refused (its lock), which stops this script.
set -eu
NS=${GB_STATIC_NS:-16}
for model in ${GB_MODELS:-obc2 obc1}; do
    seed=$([ "$model" = obc2 ] && echo 31 || echo 41)
    cgbg-bench md run --system ala2 --solvent "$model" --bias wtmetad --ns 3.2 --chunk-ps 400 \
        --threads 1 --seed "$seed" --out "data/ala2/$model-wtmetad" >> "logs/ala2-$model-wtmetad.log" 2>&1
    for walker in 1 2; do
        cgbg-bench md run --system ala2 --solvent "$model" --bias static --bias-from "data/ala2/$model-wtmetad" \
            --ns "$NS" --chunk-ps 2000 --threads 1 --seed $((seed + walker)) \
            --out "data/ala2/$model-static-$walker" >> "logs/ala2-$model-static-$walker.log" 2>&1
    done
done
