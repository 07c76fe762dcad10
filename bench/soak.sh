#!/usr/bin/env bash
# A bounded soak: tens of thousands of requests with mixed faults against
# the built-in test server, through `flagsd run` (many batches at once,
# retries on). Prints the counts, the elapsed time, the peak memory (RSS) and
# the open files of flagsd, sampled every 50 ms, at the end.
#
#   bench/soak.sh              # 40 batches x 676 codes = 27,040 codes
#   BATCHES=10 bench/soak.sh   # smaller
#
# Not a test: it checks nothing but that flagsd ends and every code is counted.
set -euo pipefail
cd "$(dirname "$0")/.."

batches=${BATCHES:-40}
cargo build --release --quiet
flagsd=$PWD/target/release/flagsd
# shellcheck source=bench/lib.sh
source bench/lib.sh
scratch_dir "${TMPDIR:-/tmp}" soak

start_testserver soak --workers 2 --seed 7 \
    --error-rate 0.05 --status-rate 0.02 --status 500 --unavailable-rate 0.05 --retry-after 0 \
    --flap-rate 0.1 --flap-failures 1 --truncate-rate 0.03 --reset-rate 0.02 \
    --slow-rate 0.01 --slow-interval 20ms --hang-rate 0.001
url=$soak_url

{
    printf '[servers]\nSOAK = "%s"\n\n' "$url"
    printf '[state]\ndir = "%s/state"\n' "$work"
    printf '[defaults]\nmax_req = 100\noutput = "%s/out"\ntimeout = "2s"\nretries = 2\nretry_base = "20ms"\n' "$work"
    for i in $(seq "$batches"); do
        printf '\n[[batch]]\nname = "b%03d"\ncodes = "every"\nserver = "SOAK"\n' "$i"
    done
} >"$work/soak.toml"

started=$(date +%s.%N)
"$flagsd" run --config "$work/soak.toml" >"$work/report.txt" 2>"$work/stderr.txt" &
pid=$!
peak_fds=0 peak_rss=0 last_fds=0
while kill -0 "$pid" 2>/dev/null; do
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l) || fds=0
    rss=$(awk '/^VmHWM:/{print $2}' "/proc/$pid/status" 2>/dev/null) || rss=0
    [ "$fds" -gt 0 ] && last_fds=$fds
    [ "$fds" -gt "$peak_fds" ] && peak_fds=$fds
    [ "${rss:-0}" -gt "$peak_rss" ] && peak_rss=$rss
    sleep 0.05
done
status=0
wait "$pid" || status=$?
elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')

sum() { awk -v what="$1" '$0 ~ what {n += $1} END {print n + 0}' "$work/report.txt"; }
downloaded=$(sum "flags? downloaded")
not_found=$(sum "not found")
errors=$(sum "errors?\\.")
codes=$((batches * 676))
echo "batches:          $batches ($codes codes)"
echo "downloaded:       $downloaded"
echo "not found:        $not_found"
echo "errors:           $errors"
echo "accounted for:    $((downloaded + not_found + errors)) of $codes"
echo "exit status:      $status"
printf 'elapsed:          %.2f s (%.0f codes/s)\n' "$elapsed" "$(awk -v c="$codes" -v e="$elapsed" 'BEGIN {print c / e}')"
echo "peak RSS:         $((peak_rss / 1024)) MiB"
echo "peak open files:  $peak_fds"
echo "open files, last: $last_fds"
stray=$(find "$work/out" -name '*.flagsd-tmp' | wc -l)
echo "temporary files:  $stray"
[ $((downloaded + not_found + errors)) -eq "$codes" ]
