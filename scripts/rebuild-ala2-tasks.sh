#!/usr/bin/env bash
# Rebuild the four ala2 tasks (core-beta and heavy-atom, each with its -biased variant) from the
# recipes their task.yaml files record, with every run pinned to ONE snapshot, then the
# leaderboard's baseline entries. From the repository root:
#     bash scripts/rebuild-ala2-tasks.sh VERSION            # prints the two commands, then runs them
#     bash scripts/rebuild-ala2-tasks.sh VERSION --dry-run  # prints them only
#     bash scripts/rebuild-ala2-tasks.sh VERSION --only heavy-atom --pins-from tasks/ala2-core-beta
#         # one representation, pinned to the chunks another task's recipe records (to finish a
#         # version whose other half is already built)
#     bash scripts/rebuild-ala2-tasks.sh VERSION --reference-only
#         # new VERSION of the four tasks with only the reference and the GB rows rebuilt from the
#         # runs as they stand (flows and force-matched baselines kept, every baseline rescored)
# Each build is `cgbg-bench make-task --recipe tasks/ala2-<representation>/task.yaml --version
# VERSION --max-chunks DIR=N...`: the settings are the recorded recipe's (to change one, run the
# printed line with make-task's flag for it added, e.g. --fm-models 8); the pins are the chunks
# finished when this starts (`python -m cgbg_bench.build.recipe --now`, the same for both
# representations) or those --pins-from's recipe records. The two builds run side by side, each
# for hours on a 2-core machine; logs: ${TMPDIR:-/tmp}/rebuild-ala2-v$VERSION-<representation>.log.
# A build stopped part way resumes from the same pins: run the printed make-task line again, or
# `make-task --recipe` of a task.yaml it has written; the force-matched baselines and ensemble
# members it finished are reused.
set -euo pipefail
usage="usage: bash scripts/rebuild-ala2-tasks.sh VERSION [--dry-run] [--only core-beta|heavy-atom] [--pins-from TASK_DIR] [--reference-only]"
version=${1:?$usage}
shift
case "$version" in ''|*[!0-9]*) echo "VERSION must be a whole number; $usage" >&2; exit 2;; esac
dry='' only='' pins_from='' ref_only=''
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=--dry-run; shift;;
        --reference-only) ref_only=--reference-only; shift;;
        --only) [ $# -ge 2 ] || { echo "--only needs core-beta or heavy-atom; $usage" >&2; exit 2; }
                case "$2" in core-beta|heavy-atom) only=$2;;
                    *) echo "--only $2: expected core-beta or heavy-atom; $usage" >&2; exit 2;; esac
                shift 2;;
        --pins-from) [ $# -ge 2 ] || { echo "--pins-from needs a task directory; $usage" >&2; exit 2; }
                     [ -f "$2/task.yaml" ] || { echo "--pins-from $2: no task.yaml there" >&2; exit 2; }
                     pins_from=$2; shift 2;;
        *) echo "unknown argument $1; $usage" >&2; exit 2;;
    esac
done
# one thread per build unless told otherwise: torch takes every core by default, and two builds
# side by side (or one beside an MD run) oversubscribe a 2-core machine (drawing 4096 bank samples
# beside one 1-thread MD run: 17.7 s with 2 threads, 0.5 s with 1); a lone build may set OMP_NUM_THREADS=2
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
reps=(core-beta heavy-atom)
[ -z "$only" ] || reps=("$only")
# the pins: one --max-chunks DIR=N pair of lines per run of the recipe (read as data, not parsed
# from a command line)
if [ -n "$pins_from" ]; then
    pins_out=$(python -m cgbg_bench.build.recipe "$pins_from/task.yaml") || {
        echo "--pins-from $pins_from: no pins" >&2; exit 2; }
else
    pins_out=$(python -m cgbg_bench.build.recipe --now "tasks/ala2-${reps[0]}/task.yaml") || exit 2
fi
mapfile -t pins <<< "$pins_out"
if [ -n "$ref_only" ]; then
    refresh=(cgbg-bench make-task --recipe "tasks/ala2-${reps[0]}/task.yaml" "${pins[@]}" --version "$version"
             --reference-only)
    for rep in "${reps[@]}"; do refresh+=(--representation "$rep"); done
    echo "${refresh[*]}"
    [ "$dry" = --dry-run ] && exit 0
    log="${TMPDIR:-/tmp}/rebuild-ala2-v$version-reference.log"
    "${refresh[@]}" > "$log" 2>&1 || { echo "reference refresh failed: $log"; exit 1; }
    cgbg-bench leaderboard add-baselines
    cgbg-bench leaderboard render
    echo "refreshed the references to v$version; next: python -m pytest"
    exit 0
fi
declare -A commands
for rep in "${reps[@]}"; do
    commands[$rep]="$(printf '%q ' cgbg-bench make-task --recipe "tasks/ala2-$rep/task.yaml" "${pins[@]}" \
        --version "$version")"
    echo "${commands[$rep]% }"
done
[ "$dry" = --dry-run ] && exit 0
declare -A pids
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; exit 130' INT TERM
for rep in "${reps[@]}"; do
    eval "${commands[$rep]}" > "${TMPDIR:-/tmp}/rebuild-ala2-v$version-$rep.log" 2>&1 &
    pids[$rep]=$!
done
status=0
for rep in "${reps[@]}"; do
    wait "${pids[$rep]}" || { echo "$rep build failed: ${TMPDIR:-/tmp}/rebuild-ala2-v$version-$rep.log"; status=1; }
done
[ $status = 0 ] || exit $status
cgbg-bench leaderboard add-baselines
cgbg-bench leaderboard render
echo "rebuilt v$version; next: python -m pytest"
