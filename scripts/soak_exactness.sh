#!/usr/bin/env bash
# Run the SIGKILL and rebalance exactness tests N times (default 30) with both cores
# saturated by busy loops, and print a tally. Usage: scripts/soak_exactness.sh [N] [LOG]
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-30}"
log="${2:-/tmp/streammon-soak-$(date +%Y%m%d-%H%M%S).log}"
passed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    if .venv/bin/python -m pytest tests/integration/test_exactness_crash.py -q -p no:cacheprovider \
        -k "cores-saturated and not again" >>"$log" 2>&1; then
        passed=$((passed + 1)); verdict=pass
    else
        verdict=FAIL
    fi
    echo "run $i/$runs: $verdict ($(( $(date +%s) - start )) s)"
done
echo "both tests passed in $passed of $runs runs with both cores saturated (log: $log)"
[[ "$passed" == "$runs" ]]
