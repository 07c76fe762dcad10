#!/usr/bin/env bash
# A soak of the fleet's fault-injection suite (tests/chaos): runs the chaos
# cases of SEEDS, a list such as 1..50 (both ends included), 7 or 3,9,20..25,
# two at a time (FLAGSD_CHAOS_JOBS=N changes that), shows each seed's
# verdict as it comes, and ends with a summary of the seeds that passed,
# failed and were skipped.
#
#   bench/chaos.sh 1..50
#   FLAGSD_CHAOS_JOBS=1 bench/chaos.sh 28      # one seed, alone
#
# Needs a nats-server >= 2.10 ($FLAGSD_NATS_SERVER, else .ci/install-nats
# finds or installs one). Without libfaketime (Debian package faketime) the
# clock offsets are skipped, and without root the full disks. A failing
# seed's report (in the log named at the end) lists what broke, the nodes'
# warnings, and where the case's files are kept. Exits 1 if a seed failed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 1 ]; then
    echo "usage: bench/chaos.sh SEEDS   (for example 1..50, 7 or 3,9,20..25)" >&2
    exit 2
fi
if [ -z "${FLAGSD_NATS_SERVER:-}" ]; then
    FLAGSD_NATS_SERVER=$(bash .ci/install-nats)
fi
export FLAGSD_NATS_SERVER FLAGSD_REQUIRE_NATS=1 FLAGSD_CHAOS_SEEDS=$1

cargo test --quiet --test chaos --no-run
log=$(mktemp "${TMPDIR:-/tmp}/flagsd-chaos.XXXXXX")
echo "== chaos seeds $1 (the whole output goes to $log)"
status=0
cargo test --quiet --test chaos soak_seeds_from_the_environment -- --nocapture 2>&1 |
    tee "$log" | grep --line-buffered -E '^chaos seed [0-9]+: (passed \(|FAILED|skipped)' || status=$?

# The seeds whose verdict line says $1.
seeds_that() {
    grep -E "^chaos seed [0-9]+: $1" "$log" | sed -E 's/^chaos seed ([0-9]+):.*/\1/' | sort -n | paste -sd ' ' || true
}
passed=$(seeds_that 'passed \(')
failed=$(seeds_that 'FAILED')
skipped=$(seeds_that 'skipped')
echo "== summary"
echo "passed:  $(wc -w <<<"$passed") ${passed:+($passed)}"
echo "failed:  $(wc -w <<<"$failed") ${failed:+($failed)}"
echo "skipped: $(wc -w <<<"$skipped") ${skipped:+($skipped)}"
for seed in $failed; do
    echo "-- seed $seed:"
    awk -v seed="$seed" '
        $0 ~ "^chaos seed " seed ": FAILED" { on = 1; next }
        on && /^  - / { print }
        on && /^(reproduce|the case.s files)/ { print; if (/^reproduce/) on = 0 }
    ' "$log"
done
if [ "$status" -ne 0 ] && [ -z "$failed" ]; then
    echo "cargo test failed before any seed did: see $log" >&2
fi
[ "$status" -eq 0 ] && [ -z "$failed" ]
