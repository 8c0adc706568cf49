#!/usr/bin/env bash
# Re-resolve requirements/*.txt from pyproject.toml (called by `make upgrade`).
# uv makes one universal lock for every supported Python; pip installs from it with hashes.
# `scripts/lock.sh --keep` adds what pyproject.toml newly asks for and keeps every other pin.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-.venv/bin/uv}"
upgrade=(--upgrade)
[[ "${1:-}" == "--keep" ]] && upgrade=()
common=(--universal --python-version 3.11 --generate-hashes "${upgrade[@]}" --quiet)
printf 'setuptools>=68\n' > requirements/build.in
"$UV" pip compile pyproject.toml requirements/build.in --extra report "${common[@]}" \
    --custom-compile-command "make upgrade" -o requirements/main.txt
"$UV" pip compile pyproject.toml requirements/build.in --extra dev "${common[@]}" \
    --custom-compile-command "make upgrade" -o requirements/dev.txt
rm requirements/build.in
echo "requirements/main.txt and requirements/dev.txt refreshed; review 'git diff requirements/'"
