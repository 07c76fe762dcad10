#!/usr/bin/env bash
# flagsd against wget2, curl --parallel and aria2c: the same 676 URLs
# (AA..ZZ, 194 of them flags) into a fresh directory, the same connection
# count, timed by hyperfine in one invocation per scenario.
#
#   bench/compare.sh            # every scenario (about 10 minutes)
#   bench/compare.sh 1 6        # only scenarios 1 and 6
#   RUNS=20 bench/compare.sh 1  # more runs
#   ONE_CORE=0 bench/compare.sh # without the runs pinned to one core
#
# Each table gives every tool's mean, its CPU time (user + system) per URL,
# and its mean again with the tool pinned to one core (taskset).
#
# Scenarios:
#   1  fast local server, 100 connections (flagsd's test server, and nginx)
#   2  0.5 s delay before every answer, 1000 connections (latency-bound)
#   3  25 % of answers are 418 errors, 100 connections
#   4  scaling: pool 1, 10, 100, 1000 x list 26, 194, 676 (chart: bench/results/scaling.svg)
#   5  peak RSS of flagsd -m 1000 on the delayed server
#   6  start-up: flagsd --version
#   7  50 configured batches x 676 codes through `flagsd run`, against wrk's ceiling
#   8  revisit: the 194 flags are on disk already; flagsd with --state (ETag,
#      If-None-Match) against wget2 -N and aria2c --conditional-get
#      (If-Modified-Since); curl has no conditional download for a URL list
#
# Downloads go to tmpfs (/dev/shm): creating files on this machine's disk
# costs 100-300 ms per 194 files and drifts from run to run; scenario 1 also
# measures flagsd on disk, separately. Results: bench/results/*.md and *.json.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-10}
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(1 2 3 4 5 6 7 8)
wants() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }

# --- tools ------------------------------------------------------------------
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_debian hyperfine wget2 curl aria2c:aria2 gnuplot:gnuplot-nox wrk nginx:nginx-light time
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
flagsd=$PWD/target/release/flagsd
results=$PWD/bench/results
mkdir -p "$results"
# --- servers ----------------------------------------------------------------
scratch_dir /dev/shm bench /tmp/flagsd-bench-disk

# --- the tools' command lines -----------------------------------------------
every_codes() { flagsd_codes=$(python3 -c 'import string as s; print(" ".join(a+b for a in s.ascii_lowercase for b in s.ascii_lowercase))'); }
every_codes
# url_list BASE N: the first N codes' URLs, one a line.
url_list() {
    local base=$1 n=$2 i=0
    for cc in $flagsd_codes; do
        [ "$i" -lt "$n" ] || break
        echo "$base/$cc/$cc.gif"
        i=$((i + 1))
    done
}

# commands BASE CONNECTIONS CODES DIR: sets cmd_flagsd, cmd_wget2, cmd_curl, cmd_aria2c.
commands() {
    local base=$1 conns=$2 n=$3 dir=$4
    url_list "$base" "$n" >"$work/urls-$n.txt"
    sed 's/.*/url = "&"/' "$work/urls-$n.txt" >"$work/curl-$n.cfg"
    cmd_flagsd="$flagsd fetch -e -l $n -m $conns -s $base -o $dir"
    # Each peer gets a 30 s timeout, like flagsd's default, so that a rare
    # stall cannot hold up the whole harness (curl once waited forever).
    cmd_wget2="wget2 -q --timeout=30 --max-threads=$conns -i $work/urls-$n.txt -P $dir"
    cmd_curl="curl -s -f --create-dirs --max-time 30 --parallel --parallel-max $conns --remote-name-all --output-dir $dir -K $work/curl-$n.cfg"
    cmd_aria2c="aria2c -q --timeout=30 -j $conns -x 1 --allow-overwrite=true --auto-file-renaming=false --max-tries=1 -d $dir -i $work/urls-$n.txt"
}

tools=(flagsd wget2 curl aria2c)

# check_saved DIR N: each tool must save exactly the flags among the first N codes.
check_saved() {
    local base=$1 conns=$2 n=$3 expected=$4
    for tool in "${tools[@]}"; do
        rm -rf "$work/out" && mkdir -p "$work/out"
        commands "$base" "$conns" "$n" "$work/out"
        local cmd="cmd_$tool"
        ${!cmd} >/dev/null 2>&1 || true
        local saved
        saved=$(find "$work/out" -name '*.gif' | wc -l)
        if [ "$saved" -ne "$expected" ]; then
            echo "!! $tool saved $saved files, expected $expected" >&2
            exit 1
        fi
    done
}

# compare NAME BASE CONNECTIONS CODES [RUNS]: hyperfine over the four tools
# on every core, then (with ONE_CORE=1, the default) again with each tool
# pinned to one core by taskset.
compare() {
    local name=$1 base=$2 conns=$3 n=$4 r=${5:-$runs}
    commands "$base" "$conns" "$n" "$work/out"
    hyperfine -N --runs "$r" --warmup 2 -i --style none \
        --prepare "rm -rf $work/out" \
        --export-json "$results/$name.json" \
        -n flagsd "$cmd_flagsd" -n wget2 "$cmd_wget2" -n curl "$cmd_curl" -n aria2c "$cmd_aria2c" >/dev/null
    rm -f "$results/$name-1core.json"
    if [ "${ONE_CORE:-1}" = 1 ]; then
        local pin="taskset -c $(( $(nproc) - 1 ))"
        hyperfine -N --runs "$r" --warmup 2 -i --style none \
            --prepare "rm -rf $work/out" \
            --export-json "$results/$name-1core.json" \
            -n flagsd "$pin $cmd_flagsd" -n wget2 "$pin $cmd_wget2" -n curl "$pin $cmd_curl" \
            -n aria2c "$pin $cmd_aria2c" >/dev/null
    fi
    summarise "$name" "$conns connections, $n URLs, $base" "$n"
}

# summarise NAME TITLE CODES: a markdown table of each tool's mean and min,
# its mean as a ratio to flagsd's, its CPU time (user + system) per URL,
# and its mean when pinned to one core, if that was measured.
summarise() {
    python3 - "$results/$1.json" "$2" "$3" "$results/$1-1core.json" >"$results/$1.md" <<'PY'
import json, os, sys
data = json.load(open(sys.argv[1]))["results"]
urls = int(sys.argv[3])
one = {}
if os.path.exists(sys.argv[4]):
    one = {r["command"]: r for r in json.load(open(sys.argv[4]))["results"]}
base = next(r["mean"] for r in data if r["command"] == "flagsd")
print(f"### {sys.argv[1].rsplit('/', 1)[-1][:-5]}: {sys.argv[2]}, {os.cpu_count()} cores\n")
print("| tool | mean | min | ratio to flagsd | CPU per URL (user+sys) | one core: mean | one core / all |")
print("|---|---|---|---|---|---|---|")
for r in data:
    cpu = (r["user"] + r["system"]) / urls * 1e6
    pinned = one.get(r["command"])
    single = f"{pinned['mean'] * 1000:.1f} ms | {pinned['mean'] / r['mean']:.2f}x" if pinned else "- | -"
    print(f"| {r['command']} | {r['mean'] * 1000:.1f} ms | {r['min'] * 1000:.1f} ms | {r['mean'] / base:.2f}x "
          f"| {cpu:.1f} µs | {single} |")
PY
    cat "$results/$1.md"
    echo
}

echo "# flagsd benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r)" >"$results/summary.md"
record() { cat "$results/$1.md" >>"$results/summary.md"; echo >>"$results/summary.md"; }

if wants 1; then
    start_testserver fast --workers 2
    check_saved "$fast_url" 100 676 194
    compare 1-fast-testserver "$fast_url" 100 676
    record 1-fast-testserver
    if start_nginx; then
        check_saved "$nginx_url" 100 676 194
        compare 1-fast-nginx "$nginx_url" 100 676
        record 1-fast-nginx
    fi
    # The same on disk, for flagsd alone.
    disk=/tmp/flagsd-bench-disk
    hyperfine -N --runs "$runs" --warmup 2 --style none --prepare "rm -rf $disk" \
        --export-json "$results/1-disk.json" -n flagsd "$flagsd fetch -e -m 100 -s ${nginx_url:-$fast_url} -o $disk" >/dev/null
    python3 -c "import json; r=json.load(open('$results/1-disk.json'))['results'][0]; print(f'flagsd on disk: mean {r[\"mean\"]*1000:.1f} ms, min {r[\"min\"]*1000:.1f} ms')" | tee -a "$results/summary.md"
fi

if wants 2 || wants 5; then
    start_testserver delayed --workers 2 --delay 0.5
fi
if wants 2; then
    check_saved "$delayed_url" 1000 676 194
    compare 2-delay "$delayed_url" 1000 676 "$(( runs < 10 ? runs : 10 ))"
    record 2-delay
fi

if wants 3; then
    start_testserver errors --workers 2 --error-rate 0.25 --seed 3
    compare 3-errors "$errors_url" 100 676
    record 3-errors
fi

if wants 4; then
    [ -n "${fast_url:-}" ] || start_testserver fast --workers 2
    scaling="$results/4-scaling.tsv"
    echo -e "tool\tpool\tcodes\tmean_s\tmin_s" >"$scaling"
    for n in 26 194 676; do
        for pool in 1 10 100 1000; do
            ONE_CORE=0 compare "4-scaling-$pool-$n" "$fast_url" "$pool" "$n" 5 >/dev/null
            python3 - "$results/4-scaling-$pool-$n.json" "$pool" "$n" >>"$scaling" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command']}\t{sys.argv[2]}\t{sys.argv[3]}\t{r['mean']:.4f}\t{r['min']:.4f}")
PY
            rm -f "$results/4-scaling-$pool-$n.json" "$results/4-scaling-$pool-$n.md"
        done
    done
    gnuplot <<GP
set terminal svg size 960,420 dynamic font "sans,11"
set output "$results/scaling.svg"
set multiplot layout 1,2 title "676 / 194 / 26 URLs from flagsd's test server, mean of 5 runs"
set logscale xy
set xlabel "pool size (connections)"
set ylabel "seconds"
set key top right
set title "676 URLs"
plot for [t in "flagsd wget2 curl aria2c"] "< awk -F'\\t' '\$1==\"".t."\" && \$3==676 {print \$2, \$4}' $scaling" using 1:2 with linespoints title t
set title "pool 100 (or the list size, if smaller)"
set xlabel "URLs"
set xrange [20:800]
plot for [t in "flagsd wget2 curl aria2c"] "< awk -F'\\t' '\$1==\"".t."\" && \$2==100 {print \$3, \$4}' $scaling" using 1:2 with linespoints title t
unset multiplot
GP
    {
        echo "### 4-scaling: mean seconds by pool size and list size"
        echo
        echo "| tool | pool | 26 URLs | 194 URLs | 676 URLs |"
        echo "|---|---|---|---|---|"
        for tool in "${tools[@]}"; do
            for pool in 1 10 100 1000; do
                printf '| %s | %s |' "$tool" "$pool"
                for n in 26 194 676; do
                    awk -F'\t' -v t="$tool" -v p="$pool" -v n="$n" '$1==t && $2==p && $3==n {printf " %.3f |", $4}' "$scaling"
                done
                echo
            done
        done
    } | tee "$results/4-scaling.md"
    record 4-scaling
fi

if wants 5; then
    /usr/bin/time -v "$flagsd" fetch -e -m 1000 -s "$delayed_url" -o "$work/rss" >/dev/null 2>"$work/time.txt"
    rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$work/time.txt")
    echo "flagsd fetch -e -m 1000, 0.5 s delay: peak RSS $((rss / 1024)) MiB" | tee -a "$results/summary.md"
fi

if wants 6; then
    hyperfine -N --runs 50 --warmup 5 --style none --export-json "$results/6-startup.json" "$flagsd --version" >/dev/null
    python3 -c "import json; r=json.load(open('$results/6-startup.json'))['results'][0]; print(f'flagsd --version: mean {r[\"mean\"]*1000:.2f} ms, min {r[\"min\"]*1000:.2f} ms')" | tee -a "$results/summary.md"
fi

if wants 7; then
    [ -n "${nginx_url:-}" ] || start_nginx || true
    base=${nginx_url:-${fast_url:-}}
    [ -n "$base" ] || { start_testserver fast --workers 2; base=$fast_url; }
    {
        printf '[state]\ndir = "%s/state"\n[defaults]\nmax_req = 2\noutput = "%s/batches"\nretries = 0\n' "$work" "$work"
        for i in $(seq 50); do printf '\n[[batch]]\nname = "b%02d"\ncodes = "every"\nserver = "%s"\n' "$i" "$base"; done
    } >"$work/batches.toml"
    # Files and state go before each run: every request is unconditional.
    hyperfine -N --runs 5 --warmup 1 -i --style none --prepare "rm -rf $work/batches $work/state" \
        --export-json "$results/7-batches.json" "$flagsd run --config $work/batches.toml" >/dev/null
    mean=$(python3 -c "import json; print(json.load(open('$results/7-batches.json'))['results'][0]['mean'])")
    wrk_rate=$(wrk -t 2 -c 100 -d 5s "$base/br/br.gif" | awk '/Requests\/sec/{print $2}')
    python3 -c "m=$mean; n=50*676; print(f'flagsd run, 50 batches x 676 codes (100 connections): {m:.2f} s, {n/m:.0f} requests/s; wrk, 100 connections: $wrk_rate requests/s ({n/m/$wrk_rate:.2f} of it)')" | tee -a "$results/summary.md"
fi

if wants 8; then
    [ -n "${fast_url:-}" ] || start_testserver fast --workers 2
    awk '{for (i = 1; i <= NF; i++) { cc = tolower($i); print "'"$fast_url"'/" cc "/" cc ".gif" }}' \
        assets/country_codes.txt >"$work/urls-flags.txt"
    revisit=$work/revisit
    rm -rf "$revisit" && mkdir -p "$revisit"
    # The warm-up runs download everything; the timed runs find it all current.
    hyperfine -N --runs "$runs" --warmup 2 -i --style none --export-json "$results/8-revisit.json" \
        -n flagsd "$flagsd fetch -a -m 100 -s $fast_url -o $revisit/flagsd --state $revisit/flagsd-state" \
        -n wget2 "wget2 -q -N --timeout=30 --max-threads=100 -i $work/urls-flags.txt -P $revisit/wget2" \
        -n aria2c "aria2c -q --timeout=30 -j 100 -x 1 --conditional-get=true --allow-overwrite=true --auto-file-renaming=false --max-tries=1 -d $revisit/aria2c -i $work/urls-flags.txt" \
        >/dev/null
    summarise 8-revisit "the 194 flags already saved, 100 connections, $fast_url"
    record 8-revisit
    # Proof that flagsd's revisit moved no body: a last run, verbose.
    unchanged=$("$flagsd" fetch -a -v -m 100 -s "$fast_url" -o "$revisit/flagsd" --state "$revisit/flagsd-state" | grep -c ' unchanged$')
    echo "flagsd revisit: $unchanged of 194 flags unchanged (304)" | tee -a "$results/summary.md"
fi

echo "results in $results/"
