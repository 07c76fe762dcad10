#!/usr/bin/env bash
# Before and after: two flagsd binaries on the hot paths, in one hyperfine
# invocation each, against the same nginx (or flagsd test server), files on
# tmpfs. For checking that a change does not slow flagsd down.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY        # e.g. a build of the last release
#   RUNS=30 bench/ab.sh old/flagsd target/release/flagsd
#
# Cases: `fetch -e -m 100` (676 URLs, scenario 1 of compare.sh), and `run`
# with 50 batches x 676 codes at 2 connections each (scenario 7). Each
# binary's run state, if it keeps any, is removed before every run.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
old=$(realpath "$1")
new=$(realpath "$2")
cd "$(dirname "$0")/.."
runs=${RUNS:-20}
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_debian hyperfine

flagsd=$new
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
scratch_dir /dev/shm ab
start_fast_server
base=$fast_server_url

echo "== fetch -e -m 100 from $base ($runs runs)"
hyperfine -N --runs "$runs" --warmup 3 --style basic --prepare "rm -rf $work/out" \
    -n before "$old fetch -e -m 100 -s $base -o $work/out" \
    -n after "$new fetch -e -m 100 -s $base -o $work/out"

for side in old new; do
    {
        printf '[state]\ndir = "%s/state"\n[defaults]\nmax_req = 2\noutput = "%s/batches"\nretries = 0\n' "$work" "$work"
        for i in $(seq 50); do printf '\n[[batch]]\nname = "b%02d"\ncodes = "every"\nserver = "%s"\n' "$i" "$base"; done
    } >"$work/$side.toml"
done
# A binary from before run state knows no [state] table: give it the file without one.
"$old" check-config --config "$work/old.toml" >/dev/null 2>&1 || sed -i '1,2d' "$work/old.toml"
echo "== run, 50 batches x 676 codes ($(( runs < 10 ? runs : 10 )) runs)"
hyperfine -N --runs "$(( runs < 10 ? runs : 10 ))" --warmup 1 --style basic \
    --prepare "rm -rf $work/batches $work/state" \
    -n before "$old run --config $work/old.toml" \
    -n after "$new run --config $work/new.toml"
