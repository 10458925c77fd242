#!/usr/bin/env bash
# Rebuild the four ala2 tasks (core-beta and heavy-atom, each with its -biased variant) from ONE
# snapshot of the MD runs, then the leaderboard's baseline entries. From the repository root:
#     bash data/rebuild-ala2-tasks.sh VERSION            # prints the two commands, then runs them
#     bash data/rebuild-ala2-tasks.sh VERSION --dry-run  # prints them only
# Every run is pinned (--max-chunks) to the chunks finished when this starts, the same pins for
# both representations (make-task alone would pin each to the chunks of its own start). The two
# builds run side by side (v7: core-beta 32 min, heavy-atom 92 min on the 2-core VM beside MD);
# logs: ${TMPDIR:-/tmp}/rebuild-ala2-v$VERSION-<representation>.log. The reference is built
# from the unbiased and the static-bias runs (make-task's default, --reference all).
set -euo pipefail
usage="usage: bash data/rebuild-ala2-tasks.sh VERSION [--dry-run]"
version=${1:?$usage}
dry=${2:-}
case "$version" in ''|*[!0-9]*) echo "VERSION must be a whole number; $usage" >&2; exit 2;; esac
case "$dry" in ''|--dry-run) ;; *) echo "unknown argument $dry; $usage" >&2; exit 2;; esac
[ $# -le 2 ] || { echo "too many arguments; $usage" >&2; exit 2; }
pins=()
for run in explicit-unbiased explicit-static explicit-static-2 explicit-wtmetad obc1 obc2; do
    n=$(cgbg-bench md status --json "data/ala2/$run" | python -c 'import json, sys; print(json.load(sys.stdin)["chunks_done"])')
    pins+=(--max-chunks "data/ala2/$run=$n")
done
common=(cgbg-bench make-task ala2 --unbiased data/ala2/explicit-unbiased
        --static data/ala2/explicit-static data/ala2/explicit-static-2 --metad data/ala2/explicit-wtmetad
        --gb obc1=data/ala2/obc1 --gb obc2=data/ala2/obc2 "${pins[@]}"
        --block-ps 200 --version "$version" --fm-models 4)
core_beta=("${common[@]}" --representation core-beta)
heavy_atom=("${common[@]}" --fm-hidden 64 64 --representation heavy-atom)
echo "${core_beta[*]}"
echo "${heavy_atom[*]}"
[ "$dry" = --dry-run ] && exit 0
cb='' ha=''
trap '[ -n "$cb" ] && kill "$cb" 2>/dev/null; [ -n "$ha" ] && kill "$ha" 2>/dev/null; exit 130' INT TERM
"${core_beta[@]}" > "${TMPDIR:-/tmp}/rebuild-ala2-v$version-core-beta.log" 2>&1 &
cb=$!
"${heavy_atom[@]}" > "${TMPDIR:-/tmp}/rebuild-ala2-v$version-heavy-atom.log" 2>&1 &
ha=$!
status=0
wait $cb || { echo "core-beta build failed: ${TMPDIR:-/tmp}/rebuild-ala2-v$version-core-beta.log"; status=1; }
wait $ha || { echo "heavy-atom build failed: ${TMPDIR:-/tmp}/rebuild-ala2-v$version-heavy-atom.log"; status=1; }
[ $status = 0 ] || exit $status
cgbg-bench leaderboard add-baselines
cgbg-bench leaderboard render
echo "rebuilt v$version; next: python -m pytest, then update README/docs numbers"
