#!/usr/bin/env bash
# The hot path of two flagsd binaries, measured two ways that this noisy
# machine does not blur as much as back-to-back hyperfine blocks do:
#
#   1. user-space instructions of `fetch -e -m 100 --threads 1`, counted by
#      valgrind's callgrind (deterministic to a fraction of a per cent);
#   2. RUNS alternating runs of `fetch -e -m 100` (old, new, wget2, old,
#      new, wget2, ...): median and mean wall time, median CPU time (user +
#      system), so that a drift of the machine hits all three alike.
#
#   bench/hotpath.sh OLD_BINARY NEW_BINARY
#   RUNS=80 bench/hotpath.sh old/flagsd target/release/flagsd
#
# Against nginx (one worker) when it is installed, else flagsd's test
# server; files on tmpfs, a fresh directory for every run.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bench/hotpath.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
old=$(realpath "$1")
new=$(realpath "$2")
cd "$(dirname "$0")/.."
runs=${RUNS:-40}
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_debian valgrind wget2

flagsd=$new
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
scratch_dir /dev/shm hotpath
start_fast_server
base=$fast_server_url
python3 -c 'import string as s; print("\n".join(f"'"$base"'/{a}{b}/{a}{b}.gif" for a in s.ascii_lowercase for b in s.ascii_lowercase))' \
    >"$work/urls.txt"

echo "== user-space instructions, fetch -e -m 100 --threads 1 from $base"
for side in old new; do
    binary=${!side}
    rm -rf "$work/out"
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.$side" \
        "$binary" fetch -e -m 100 --threads 1 -s "$base" -o "$work/out" 2>"$work/valgrind.$side" >/dev/null
    printf '%s: %s\n' "$side" "$(awk '/Collected/{print $4}' "$work/valgrind.$side")"
done

echo "== $runs alternating runs of fetch -e -m 100"
python3 - "$runs" "$work" \
    "old=$old fetch -e -m 100 -s $base -o {out}" \
    "new=$new fetch -e -m 100 -s $base -o {out}" \
    "wget2=wget2 -q --timeout=30 --max-threads=100 -i $work/urls.txt -P {out}" <<'PY'
import os, shutil, statistics, subprocess, sys, time

runs, work, cases = int(sys.argv[1]), sys.argv[2], [c.split("=", 1) for c in sys.argv[3:]]
figures = {name: [] for name, _ in cases}
for round_ in range(runs + 2):  # the first two rounds warm up
    for name, command in cases:
        out = os.path.join(work, "out")
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        child = subprocess.Popen(command.replace("{out}", out).split(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        _, _, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        if round_ >= 2:
            figures[name].append((wall * 1000, (usage.ru_utime + usage.ru_stime) * 1000))
for name, _ in cases:
    walls = [w for w, _ in figures[name]]
    cpus = [c for _, c in figures[name]]
    print(f"{name:6} wall median {statistics.median(walls):6.2f} ms, mean {statistics.mean(walls):6.2f} ms;"
          f" CPU median {statistics.median(cpus):6.2f} ms")
PY
