#!/usr/bin/env bash
# Rebuild the four ala2 tasks (core-beta and heavy-atom, each with its -biased variant) from ONE
# snapshot of the MD runs, then the leaderboard's baseline entries. From the repository root:
#     bash data/rebuild-ala2-tasks.sh VERSION            # prints the two commands, then runs them
#     bash data/rebuild-ala2-tasks.sh VERSION --dry-run  # prints them only
#     bash data/rebuild-ala2-tasks.sh VERSION --only heavy-atom --pins-from tasks/ala2-core-beta
#         # one representation, pinned to the chunks another task was built from (to finish a
#         # version whose other half is already built; only its --max-chunks pins are taken, the
#         # other options are this script's; the pins of its reference, and for runs that are not
#         # in its reference, i.e. the metadynamics run, those its flow was trained on; after a
#         # --reference-only refresh the reference's pins are newer than the flows', so the build
#         # trains on the refreshed reference's chunks, not on the other task's training chunks)
#     bash data/rebuild-ala2-tasks.sh VERSION --reference-only
#         # new VERSION of the four tasks with only the reference and the GB rows rebuilt from the
#         # runs as they stand (flows and force-matched baselines kept, every baseline rescored;
#         # ~30 min), e.g. once more MD has made the reference better
# Every run is pinned (--max-chunks) to the chunks finished when this starts (or to those of
# --pins-from), the same pins for both representations (make-task alone would pin each to the
# chunks of its own start). The two builds run side by side (v10: core-beta 88 min at one thread
# beside other work, the heavy-atom half stopped unfinished; v8: core-beta 86 min on the 2-core VM
# beside the heavy-atom build and MD; heavy-atom v8 did not finish in a 3-hour session, ~2 h alone);
# logs: ${TMPDIR:-/tmp}/rebuild-ala2-v$VERSION-<representation>.log. A build stopped part way
# resumes when run again on the same pins: with --pins-from (its pins do not move), or by running
# the printed make-task line itself (this script alone re-pins to the chunks finished by then);
# the force-matched baselines and ensemble members it finished are then reused. The reference is built
# from the unbiased and the static-bias runs (make-task's default, --reference all).
set -euo pipefail
usage="usage: bash data/rebuild-ala2-tasks.sh VERSION [--dry-run] [--only core-beta|heavy-atom] [--pins-from TASK_DIR] [--reference-only]"
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
# side by side (or one beside an MD run) then oversubscribe the 2-core VM; measured in session 13,
# drawing 4096 bank samples beside one 1-thread MD run took 17.7 s with 2 threads, 0.5 s with 1;
# a lone build on an idle machine may set OMP_NUM_THREADS=2
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
runs=(explicit-unbiased explicit-static explicit-static-2 explicit-wtmetad obc1 obc2)
pins=()
if [ -n "$pins_from" ]; then
    # the --max-chunks of the command that built that task's reference, then those of its flow's
    # command for runs the reference command does not pin (a --reference-only refresh pins no
    # metadynamics run)
    mapfile -t pins < <(python - "$pins_from/task.yaml" <<'PY'
import shlex, sys, yaml
task = yaml.safe_load(open(sys.argv[1]))
pins = {}
for entry in ("reference", "proposal"):
    cmd = shlex.split(task[entry]["provenance"]["command"])
    for i, a in enumerate(cmd):
        if a == "--max-chunks":
            run, _, n = cmd[i + 1].rpartition("=")
            pins.setdefault(run, n)
if not pins:
    sys.exit(f"{sys.argv[1]}: its reference and flow commands have no --max-chunks pins")
for run, n in pins.items():
    print("--max-chunks"); print(f"{run}={n}")
PY
)
    [ ${#pins[@]} -gt 0 ] || { echo "--pins-from $pins_from: no pins found" >&2; exit 2; }
    for run in "${runs[@]}"; do
        case " ${pins[*]} " in *" data/ala2/$run="*) ;;
            *) echo "--pins-from $pins_from: no --max-chunks pin for data/ala2/$run in its reference or flow command" >&2
               exit 2;; esac
    done
else
    for run in "${runs[@]}"; do
        n=$(cgbg-bench md status --json "data/ala2/$run" | python -c 'import json, sys; print(json.load(sys.stdin)["chunks_done"])')
        pins+=(--max-chunks "data/ala2/$run=$n")
    done
fi
reference_runs=(--unbiased data/ala2/explicit-unbiased --static data/ala2/explicit-static data/ala2/explicit-static-2)
gb_runs=(--gb obc1=data/ala2/obc1 --gb obc2=data/ala2/obc2)
if [ -n "$ref_only" ]; then
    ref_pins=()  # the reference-only refresh reads no metadynamics run
    for ((i = 0; i < ${#pins[@]}; i += 2)); do
        case "${pins[i+1]}" in data/ala2/explicit-wtmetad=*) ;; *) ref_pins+=("${pins[i]}" "${pins[i+1]}");; esac
    done
    refresh=(cgbg-bench make-task ala2 "${reference_runs[@]}" "${gb_runs[@]}" "${ref_pins[@]}"
             --block-ps 200 --version "$version" --reference-only)
    [ -z "$only" ] || refresh+=(--representation "$only")
    echo "${refresh[*]}"
    [ "$dry" = --dry-run ] && exit 0
    log="${TMPDIR:-/tmp}/rebuild-ala2-v$version-reference.log"
    "${refresh[@]}" > "$log" 2>&1 || { echo "reference refresh failed: $log"; exit 1; }
    cgbg-bench leaderboard add-baselines
    cgbg-bench leaderboard render
    echo "refreshed the references to v$version; next: python -m pytest, then update README/docs numbers"
    exit 0
fi
# from v11 the force-matched baselines get the (phi, psi) correction (docs/force-matching.md, session
# 15); v10 and older keep the command they were started with, so that an interrupted build resumes
fm_extra=()
[ "$version" -lt 11 ] || fm_extra=(--fm-dihedral-correction 4)
common=(cgbg-bench make-task ala2 "${reference_runs[@]}" --metad data/ala2/explicit-wtmetad
        "${gb_runs[@]}" "${pins[@]}"
        --block-ps 200 --version "$version" --fm-models 4 "${fm_extra[@]}")
core_beta=("${common[@]}" --representation core-beta)
heavy_atom=("${common[@]}" --fm-hidden 64 64 --representation heavy-atom)
[ "$only" = heavy-atom ] || echo "${core_beta[*]}"
[ "$only" = core-beta ] || echo "${heavy_atom[*]}"
[ "$dry" = --dry-run ] && exit 0
cb='' ha=''
trap '[ -n "$cb" ] && kill "$cb" 2>/dev/null; [ -n "$ha" ] && kill "$ha" 2>/dev/null; exit 130' INT TERM
if [ "$only" != heavy-atom ]; then
    "${core_beta[@]}" > "${TMPDIR:-/tmp}/rebuild-ala2-v$version-core-beta.log" 2>&1 &
    cb=$!
fi
if [ "$only" != core-beta ]; then
    "${heavy_atom[@]}" > "${TMPDIR:-/tmp}/rebuild-ala2-v$version-heavy-atom.log" 2>&1 &
    ha=$!
fi
status=0
if [ -n "$cb" ]; then
    wait $cb || { echo "core-beta build failed: ${TMPDIR:-/tmp}/rebuild-ala2-v$version-core-beta.log"; status=1; }
fi
if [ -n "$ha" ]; then
    wait $ha || { echo "heavy-atom build failed: ${TMPDIR:-/tmp}/rebuild-ala2-v$version-heavy-atom.log"; status=1; }
fi
[ $status = 0 ] || exit $status
cgbg-bench leaderboard add-baselines
cgbg-bench leaderboard render
echo "rebuilt v$version; next: python -m pytest, then update README/docs numbers"
