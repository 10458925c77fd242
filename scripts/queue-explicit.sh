#!/usr/bin/env bash
# Explicit-solvent task production of ala3 or ala6 on one core (docs/md.md, "Tri- and hexapeptide
# runs"): in a rhombic dodecahedron keeping >= 1.6 nm to the nearest image, well-tempered
# metadynamics on the scored residue's (phi, psi) for 3.2 ns, then passes that extend each
# production run (two static-bias walkers under the frozen bias, one unbiased walker) by one step,
# so they grow together. Run from the repository root, detached:
#     mkdir -p logs && setsid nohup bash scripts/queue-explicit.sh >> logs/queue-explicit.log 2>&1 < /dev/null &
# Every command resumes its run from its checkpoint, so re-running the script continues it.
# EXPLICIT_SYSTEM (default ala6; ala3) picks the peptide; EXPLICIT_RUNS the production runs, in
# pass order (default "static-1 unbiased static-2"; e.g. EXPLICIT_RUNS=static-2 for a second core,
# started once the metadynamics has finished); EXPLICIT_STEP_NS the step (default: 2 chunks, 0.8 ns
# for ala3, 0.4 ns for ala6); EXPLICIT_MAX_NS the length at which a run stops growing (default 100).
# A run another process is writing is refused (its lock), which stops this script.
set -eu
SYSTEM=${EXPLICIT_SYSTEM:-ala6}
case "$SYSTEM" in
    ala3) seed=101 chunk=400 step=0.8 ;;
    ala6) seed=201 chunk=200 step=0.4 ;;
    *) echo "queue-explicit.sh: no seeds for $SYSTEM" >&2; exit 2 ;;
esac
STEP=${EXPLICIT_STEP_NS:-$step}
RUNS=${EXPLICIT_RUNS:-static-1 unbiased static-2}
MAX_NS=${EXPLICIT_MAX_NS:-100}
COMMON=(--system "$SYSTEM" --solvent explicit --box-shape dodecahedron --image-distance 1.6 --chunk-ps "$chunk" --threads 1)
metad=data/$SYSTEM/explicit-wtmetad-rd16
cgbg-bench md run "${COMMON[@]}" --bias wtmetad --ns 3.2 --seed "$seed" --out "$metad" >> "logs/$SYSTEM-explicit-wtmetad.log" 2>&1
while true; do
    grew=0
    for name in $RUNS; do
        case "$name" in
            static-1) args=(--bias static --bias-from "$metad" --seed $((seed + 1))) out=data/$SYSTEM/explicit-static-rd16-1 ;;
            static-2) args=(--bias static --bias-from "$metad" --seed $((seed + 2))) out=data/$SYSTEM/explicit-static-rd16-2 ;;
            unbiased) args=(--bias none --seed $((seed + 3))) out=data/$SYSTEM/explicit-unbiased-rd16 ;;
            *) echo "queue-explicit.sh: unknown run $name" >&2; exit 2 ;;
        esac
        done_ns=0
        if [ -f "$out/run.json" ]; then
            done_ns=$(cgbg-bench md status --json "$out" | python -c 'import json, sys; print(json.load(sys.stdin)["ns_done"])')
        fi
        target=$(python -c "print(round(min($done_ns + $STEP, $MAX_NS), 3))")
        if python -c "import sys; sys.exit(not $target > $done_ns)"; then
            grew=1
            cgbg-bench md run "${COMMON[@]}" "${args[@]}" --ns "$target" --out "$out" >> "logs/$SYSTEM-explicit-$name.log" 2>&1
        fi
    done
    [ "$grew" = 1 ] || break
done
