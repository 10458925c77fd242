#!/usr/bin/env bash
# Carry an unfinished task build across sessions: a session's checkout holds only what is
# committed on main, so the parts of a long `make-task` build that it can reuse (finished
# force-matching ensemble members in $CGBG_BENCH_CACHE/fm-members, and the baseline exports it
# already wrote under baselines/) would be lost with the machine. From the repository root:
#     bash data/build-cache.sh save TASK...   # copy them into data/build-cache/ (then commit it)
#     bash data/build-cache.sh restore        # copy them back (then rerun the build's command)
#     bash data/build-cache.sh clear          # remove data/build-cache/ (once the build landed)
# `save` takes the baseline exports (fm-*.pt2 and their .yaml sidecars) of each TASK's
# baselines/TASK/ that differ from the committed ones, and every member checkpoint in the cache.
# `restore` never overwrites a newer file: it refuses if a target exists and differs.
# The build decides on its own whether they are reusable (same command, data, settings:
# cgbg_bench.fm.pipeline.matching_export and train_peptide_pmf's member keys).
set -euo pipefail
usage="usage: bash data/build-cache.sh save TASK... | restore | clear"
store=data/build-cache
cache=${CGBG_BENCH_CACHE:-$HOME/.cache/cgbg-bench}
[ -f pyproject.toml ] && [ -d baselines ] || { echo "run from the repository root" >&2; exit 2; }
cmd=${1:-}
shift || true
case "$cmd" in
    save)
        [ $# -ge 1 ] || { echo "save needs TASK names; $usage" >&2; exit 2; }
        mkdir -p "$store/fm-members"
        n=0
        for f in "$cache"/fm-members/fm-member-*.pt; do
            [ -e "$f" ] || continue
            cp -p "$f" "$store/fm-members/"; n=$((n + 1))
        done
        echo "saved $n member checkpoint(s) from $cache/fm-members"
        for task in "$@"; do
            [ -d "baselines/$task" ] || { echo "no baselines/$task" >&2; exit 2; }
            for f in baselines/"$task"/fm-*.pt2 baselines/"$task"/fm-*.yaml; do
                [ -e "$f" ] || continue
                if ! git diff --quiet HEAD -- "$f" 2>/dev/null || ! git ls-files --error-unmatch "$f" >/dev/null 2>&1; then
                    mkdir -p "$store/$(dirname "$f")"
                    cp -p "$f" "$store/$f"; echo "saved $f"
                fi
            done
        done
        ;;
    restore)
        [ -d "$store" ] || { echo "nothing to restore: no $store" >&2; exit 1; }
        mkdir -p "$cache/fm-members"
        (cd "$store" && find . -type f ! -name README.md) | while read -r rel; do
            rel=${rel#./}
            case "$rel" in
                fm-members/*) dest="$cache/$rel";;
                *) dest=$rel;;
            esac
            if [ -e "$dest" ] && ! cmp -s "$store/$rel" "$dest"; then
                case "$rel" in
                    fm-members/*) echo "refusing: $dest exists and differs from $store/$rel" >&2; exit 1;;
                esac
                # a committed baseline of the previous version: the saved one is the build's newer output
                git ls-files --error-unmatch "$dest" >/dev/null 2>&1 && git diff --quiet HEAD -- "$dest" \
                    || { echo "refusing: $dest has uncommitted changes that differ from $store/$rel" >&2; exit 1; }
            fi
            mkdir -p "$(dirname "$dest")"
            cp -p "$store/$rel" "$dest"; echo "restored $dest"
        done
        ;;
    clear)
        git rm -r -q -f --ignore-unmatch "$store"
        rm -rf "$store"
        echo "removed $store (commit the removal)"
        ;;
    *) echo "$usage" >&2; exit 2;;
esac
