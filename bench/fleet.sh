#!/usr/bin/env bash
# The fleet's figures: nodes of one fleet on this machine, a real
# nats-server, and `flagsd run` submitting to them (files on tmpfs).
#
#   bench/fleet.sh            # every part, about 5 minutes
#   bench/fleet.sh scaling    # one part: scaling, overhead or memory
#
# 1. scaling: 1, 2 and 3 nodes (30 workers each) fetch the 676 codes from a
#    test server answering after 0.2 s (hyperfine, 5 runs each);
# 2. overhead: a fleet of one node against plain `flagsd run`, on the same
#    fast server (nginx when installed, else the test server), 30 workers,
#    RUNS (60) rounds alternating the two, compared by their medians; then
#    the node's and nats-server's CPU per code over 20 more fleet runs;
# 3. memory: 50 batches x 676 codes (2 workers each) through 2 nodes: peak
#    RSS of each node and of nats-server, sampled every 50 ms.
# Needs hyperfine (installed from Debian when missing) and a nats-server
# >= 2.10 (.ci/install-nats installs one). Prints the figures; checks only
# that every run accounts for every code.
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(scaling overhead memory)
cargo build --release --quiet
flagsd=$PWD/target/release/flagsd
nats_server=${FLAGSD_NATS_SERVER:-$(bash .ci/install-nats)}
work=$(mktemp -d /dev/shm/flagsd-fleet.XXXXXX)
chmod 755 "$work"
pids=()
nodes=()
cleanup() {
    stop_nodes
    stop_servers
    rm -rf "$work"
}
trap cleanup EXIT
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_debian hyperfine

# start_nats: a JetStream server on a free port, ready; sets nats_url, nats_pid.
start_nats() {
    local port monitor
    port=$(free_port)
    monitor=$(free_port)
    rm -rf "$work/js"
    "$nats_server" -a 127.0.0.1 -p "$port" -m "$monitor" -js -sd "$work/js" >"$work/nats.log" 2>&1 &
    nats_pid=$!
    pids+=("$nats_pid")
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$monitor/healthz" >/dev/null 2>&1 && break
        sleep 0.05
    done
    nats_url="nats://127.0.0.1:$port"
}

# write_config FILE URL BATCHES MAX_REQ: a fleet configuration with BATCHES
# batches of every code from URL.
write_config() {
    local file=$1 url=$2 batches=$3 max_req=$4
    {
        printf '[fleet]\nnats = "%s"\nname = "bench"\n\n' "$nats_url"
        printf '[state]\ndir = "%s/state"\n' "$work"
        printf '[defaults]\nmax_req = %s\noutput = "%s/out"\nretries = 0\n' "$max_req" "$work"
        for i in $(seq "$batches"); do
            printf '\n[[batch]]\nname = "b%03d"\ncodes = "every"\nserver = "%s"\n' "$i" "$url"
        done
    } >"$file"
}

# start_nodes CONFIG N: N nodes, waiting until each pulls its batches.
start_nodes() {
    local config=$1 n=$2 i
    for i in $(seq "$n"); do
        FLAGSD_FLEET__NODE="n$i" FLAGSD_LOG=info "$flagsd" serve --config "$config" >/dev/null 2>"$work/node-$i.log" &
        nodes+=($!)
    done
    for i in $(seq "$n"); do
        for _ in $(seq 400); do
            grep -q "lane open" "$work/node-$i.log" 2>/dev/null && break
            sleep 0.05
        done
    done
}

stop_nodes() {
    for pid in "${nodes[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${nodes[@]}"; do wait "$pid" 2>/dev/null || true; done
    nodes=()
}

# check_run CONFIG: one run, checked: every code of every batch accounted for.
check_run() {
    "$flagsd" run --json --config "$1" >"$work/check.json"
    python3 - "$work/check.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for b in doc["batches"]:
    c = b["counts"]
    assert c["downloaded"] + c["unchanged"] + c["not_found"] + c["errors"] == 676, (b["name"], c)
    assert c["errors"] == 0 and c["unfinished"] == 0, (b["name"], c)
PY
}

# peak_rss PID...: the largest VmRSS (KiB) of the processes, sampled every 50 ms
# until the file $work/stop exists; printed per process.
sample_rss() {
    local -A peak=()
    while [ ! -e "$work/stop" ]; do
        for pid in "$@"; do
            local kib
            kib=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
            [ "${kib:-0}" -gt "${peak[$pid]:-0}" ] && peak[$pid]=$kib
        done
        sleep 0.05
    done
    for pid in "$@"; do echo "$pid ${peak[$pid]:-0}"; done
}

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# cpu_per_code CONFIG RUNS: the CPU time the node(s) and nats-server spend
# per code over RUNS runs of CONFIG's batches of 676 codes.
cpu_per_code() {
    local config=$1 runs=$2 tick i node_ticks=0 nats0 node0=()
    tick=$(getconf CLK_TCK)
    nats0=$(cpu_ticks "$nats_pid")
    for i in "${!nodes[@]}"; do node0[i]=$(cpu_ticks "${nodes[i]}"); done
    for i in $(seq "$runs"); do "$flagsd" run --config "$config" >/dev/null; done
    for i in "${!nodes[@]}"; do node_ticks=$((node_ticks + $(cpu_ticks "${nodes[i]}") - node0[i])); done
    python3 - "$tick" "$runs" "$node_ticks" "$(($(cpu_ticks "$nats_pid") - nats0))" <<'PY'
import sys
tick, runs, node, nats = (int(v) for v in sys.argv[1:])
codes = runs * 676
per = lambda ticks: ticks / tick / codes * 1e6
print(f"CPU per code over {codes:,} codes: node(s) {per(node):.0f} µs, nats-server {per(nats):.0f} µs"
      f" ({1e6 / per(nats):,.0f} codes/s per nats-server core)" if nats else "no CPU measured")
PY
}

# alternate RUNS PLAIN FLEET: RUNS rounds of one PLAIN run then one FLEET
# run (output and state removed before each), so that both see the same
# machine; prints their wall-time medians and quartiles, and the ratio of
# the medians.
alternate() {
    python3 - "$1" "$work" "$2" "$3" <<'PY'
import shutil, statistics, subprocess, sys, time

runs, work, plain, fleet = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
walls = {"plain run": [], "fleet of one": []}
for round_ in range(runs + 3):  # the first three rounds warm up
    for name, command in (("plain run", plain), ("fleet of one", fleet)):
        for gone in ("out", "state"):
            shutil.rmtree(f"{work}/{gone}", ignore_errors=True)
        started = time.perf_counter()
        subprocess.run(command.split(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if round_ >= 3:
            walls[name].append((time.perf_counter() - started) * 1000)
for name, figures in walls.items():
    q1, median, q3 = statistics.quantiles(figures, n=4)
    print(f"{name:12}: median {median:5.1f} ms (quartiles {q1:5.1f} / {q3:5.1f} ms) over {runs} runs")
ratio = statistics.median(walls["fleet of one"]) / statistics.median(walls["plain run"])
print(f"fleet of one / plain run: {ratio:.2f}x (medians)")
PY
}

for part in "${parts[@]}"; do
    case $part in
    scaling)
        echo "== scaling: 676 codes, 0.2 s per answer, 30 workers per node"
        start_nats
        start_testserver slow --workers 4 --delay 0.2
        write_config "$work/scaling.toml" "$slow_url" 1 30
        for n in 1 2 3; do
            start_nodes "$work/scaling.toml" "$n"
            check_run "$work/scaling.toml"
            hyperfine -N --runs 5 --warmup 1 --style basic --prepare "rm -rf $work/out" \
                -n "$n node(s)" "$flagsd run --config $work/scaling.toml"
            stop_nodes
        done
        stop_servers
        pids=()
        ;;
    overhead)
        echo "== overhead: a fleet of one node against plain run, 676 codes, 30 workers"
        start_nats
        start_fast_server
        write_config "$work/fleet.toml" "$fast_server_url" 1 30
        sed '1,4d' "$work/fleet.toml" >"$work/plain.toml"
        start_nodes "$work/fleet.toml" 1
        check_run "$work/fleet.toml"
        alternate "${RUNS:-60}" "$flagsd run --config $work/plain.toml" "$flagsd run --config $work/fleet.toml"
        cpu_per_code "$work/fleet.toml" 20
        stop_nodes
        stop_servers
        pids=()
        ;;
    memory)
        echo "== memory: 50 batches x 676 codes through 2 nodes, 2 workers each per batch"
        start_nats
        start_fast_server
        write_config "$work/memory.toml" "$fast_server_url" 50 2
        start_nodes "$work/memory.toml" 2
        rm -f "$work/stop"
        sample_rss "$nats_pid" "${nodes[@]}" >"$work/rss" &
        sampler=$!
        start=$(date +%s.%N)
        check_run "$work/memory.toml"
        end=$(date +%s.%N)
        touch "$work/stop"
        wait "$sampler"
        python3 - "$start" "$end" <<PY
import sys
elapsed = float(sys.argv[2]) - float(sys.argv[1])
print(f"33,800 codes in {elapsed:.2f} s: {33800 / elapsed:,.0f} codes/s through the fleet")
PY
        while read -r pid kib; do
            if [ "$pid" = "$nats_pid" ]; then what=nats-server; else what="node (pid $pid)"; fi
            echo "peak RSS of $what: $((kib / 1024)) MiB"
        done <"$work/rss"
        stop_nodes
        stop_servers
        pids=()
        ;;
    *)
        echo "unknown part: $part (scaling, overhead or memory)" >&2
        exit 2
        ;;
    esac
done
