#!/usr/bin/env bash
# Carry an unfinished task build across machines: a fresh checkout holds only what is
# committed on main, so the parts of a long `make-task` build that it can reuse (finished
# force-matching ensemble members in $CGBG_BENCH_CACHE/fm-members, and the baseline exports it
# already wrote under baselines/) would be lost with the machine. From the repository root:
#     bash scripts/build-cache.sh save TASK...   # copy them into data/build-cache/ (then commit it)
#     bash scripts/build-cache.sh restore        # copy them back (then rerun the build's command)
#     bash scripts/build-cache.sh clear          # remove data/build-cache/ (once the build landed)
# `save` takes the baseline exports (fm-*.pt2 and their .yaml sidecars) of each TASK's
# baselines/TASK/ that differ from the committed ones, and every member checkpoint in the cache.
# `restore` checks every file before copying any: it refuses to overwrite a differing member
# checkpoint, an uncommitted change, or a baseline committed after the save.
# The build decides on its own whether they are reusable (same command, data, settings:
# cgbg_bench.fm.pipeline.matching_export and train_peptide_pmf's member keys).
set -euo pipefail
usage="usage: bash scripts/build-cache.sh save TASK... | restore | clear"
store=data/build-cache
cache=${CGBG_BENCH_CACHE:-$HOME/.cache/cgbg-bench}
[ -f pyproject.toml ] && [ -d baselines ] || { echo "run from the repository root" >&2; exit 2; }
cmd=${1:-}
shift || true
case "$cmd" in
    save)
        [ $# -ge 1 ] || { echo "save needs TASK names; $usage" >&2; exit 2; }
        for task in "$@"; do
            [ -d "baselines/$task" ] || { echo "no baselines/$task" >&2; exit 2; }
        done
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
        mapfile -t rels < <(cd "$store" && find . -type f ! -name README.md | sed 's|^\./||' | sort)
        [ ${#rels[@]} -gt 0 ] || { echo "nothing to restore: $store is empty" >&2; exit 1; }
        dest_of() { case "$1" in fm-members/*) echo "$cache/$1";; *) echo "$1";; esac; }
        # check every file first, so that a refusal leaves nothing half restored
        for rel in "${rels[@]}"; do
            dest=$(dest_of "$rel")
            [ -e "$dest" ] && ! cmp -s "$store/$rel" "$dest" || continue
            case "$rel" in
                fm-members/*) echo "refusing: $dest exists and differs from $store/$rel" >&2; exit 1;;
            esac
            git ls-files --error-unmatch "$dest" >/dev/null 2>&1 && git diff --quiet HEAD -- "$dest" \
                || { echo "refusing: $dest has uncommitted changes that differ from $store/$rel" >&2; exit 1; }
            # a committed baseline older than the saved one is what the saved build replaces; a newer
            # one (the build landed after the save) must not be overwritten: run `clear` instead
            if [ "$(git log -1 --format=%ct -- "$dest")" -gt "$(git log -1 --format=%ct -- "$store/$rel")" ]; then
                echo "refusing: $dest was committed after $store/$rel was saved (the build has landed?)" >&2; exit 1
            fi
        done
        mkdir -p "$cache/fm-members"
        for rel in "${rels[@]}"; do
            dest=$(dest_of "$rel")
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
