#!/usr/bin/env bash
# Make one Ed25519 key directory per docker-compose service (once; kept in keys/, ignored
# by git). Each service gets only its own private key and the public keys it verifies:
#   worker   (decider)  decider.key + actuator/operator .pub
#   actuator            actuator.key + decider/operator .pub
#   traffic  (operator) operator.key + actuator/decider .pub
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-keys}"
streammon="${STREAMMON:-.venv/bin/streammon}"
[ -d "$dir/actuator" ] && exit 0
made="$(mktemp -d)"
trap 'rm -rf "$made"' EXIT
for principal in decider actuator operator; do
    "$streammon" keys new "$principal" --dir "$made" >/dev/null
done
for pair in worker:decider actuator:actuator traffic:operator; do
    service="${pair%%:*}" principal="${pair#*:}"
    mkdir -p "$dir/$service"
    cp "$made"/*.pub "$dir/$service/"
    cp "$made/$principal".*.key "$dir/$service/"
    chmod 600 "$dir/$service/$principal".*.key
done
echo "keys for worker, actuator and traffic written under $dir/"
