#!/usr/bin/env bash
# Regenerates both dependency locks from pyproject.toml, every line pinned with its hashes:
#   requirements/runtime.txt  [project].dependencies and their whole tree: what production installs
#   requirements/dev.txt      the same plus the "dev" extra (tests, lint, honcho, uv), compiled with
#                             runtime.txt as a constraint so the two agree on every shared pin
# `make venv` installs dev.txt with `pip install --require-hashes`.
#
# Usage (run from anywhere; `make lock ARGS="..."` does the same):
#   scripts/lock.sh                                  after adding, removing or changing a pin in
#                                                    pyproject.toml: the locks follow, nothing else moves
#   scripts/lock.sh --upgrade-package NAME [...]     move NAME (repeatable) to its newest allowed version
#   scripts/lock.sh --upgrade                        move everything (review the diff)
# Any other argument is passed to both `uv pip compile` runs as it is.
#
# Versions already in the locks are kept unless pyproject.toml or an --upgrade flag asks otherwise.
# The locks are universal (any OS, any Python 3.11.x): pip skips lines whose environment marker does
# not match. uv comes from .venv (the dev extra pins it); set UV=/path/to/uv to use another one.
# If either compile fails, both files are left as they were.
set -euo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-.venv/bin/uv}
if [[ ! -x $UV ]]; then
    UV=$(command -v uv) || {
        echo "lock.sh: uv not found: run 'make venv' first (or set UV=/path/to/uv)" >&2
        exit 1
    }
fi

mkdir -p requirements
backup=$(mktemp -d)
trap 'rm -rf "$backup"' EXIT
for f in runtime dev; do
    if [[ -f requirements/$f.txt ]]; then cp "requirements/$f.txt" "$backup/"; fi
done
restore() {
    echo "lock.sh: compile failed, requirements/ left unchanged" >&2
    for f in runtime dev; do
        if [[ -f $backup/$f.txt ]]; then cp "$backup/$f.txt" requirements/; else rm -f "requirements/$f.txt"; fi
    done
}
trap 'restore' ERR

common=(--quiet --generate-hashes --universal --python-version 3.11 --custom-compile-command "make lock")
"$UV" pip compile pyproject.toml "${common[@]}" "$@" -o requirements/runtime.txt
"$UV" pip compile pyproject.toml --extra dev -c requirements/runtime.txt "${common[@]}" "$@" \
    -o requirements/dev.txt
