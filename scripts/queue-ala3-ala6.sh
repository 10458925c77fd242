#!/usr/bin/env bash
# Tri- and hexapeptide production on one core, in passes: every pass extends each run by one
# step (OBC2 and explicit-solvent, unbiased), so all four runs grow together and each pass
# resumes every run from its checkpoint. Run from the repository root, detached:
#     mkdir -p logs && setsid nohup bash scripts/queue-ala3-ala6.sh >> logs/queue-ala3-ala6.log 2>&1 < /dev/null &
# Stop it any time (kill the process group); re-running it continues where the runs stand.
set -u
run() {  # run SYSTEM SOLVENT SEED CHUNK_PS STEP_NS
    local sys=$1 solv=$2 seed=$3 chunk=$4 step=$5 out=data/$1/$2-unbiased
    [ "$solv" = explicit ] || out=data/$1/$2
    local done_ns
    done_ns=$(cgbg-bench md status --json "$out" 2>/dev/null | python -c 'import json,sys; print(json.load(sys.stdin)["ns_done"])' 2>/dev/null || echo 0)
    local target
    target=$(python -c "print(round($done_ns + $step, 3))")
    cgbg-bench md run --system "$sys" --solvent "$solv" --bias none --ns "$target" \
        --chunk-ps "$chunk" --threads 1 --seed "$seed" --out "$out" >> "logs/$1-$2.log" 2>&1
}
while true; do
    run ala3 obc2 21 1000 2.0
    run ala6 obc2 22 500 1.0
    run ala3 explicit 23 400 0.8
    run ala6 explicit 24 200 0.4
done
