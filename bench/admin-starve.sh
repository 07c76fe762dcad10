#!/usr/bin/env bash
# Can anyone who can connect starve the admin endpoint? `flagsd serve`
# with a token and an admin endpoint on loopback; a probe opens a new
# connection for each `GET /healthz` (as a service manager's or
# orchestrator's probe does) and its latency is measured, 100 probes per
# case, against the target of 100 ms:
#
#   quiet     nothing else connects;
#   held      200 idle connections (connected, nothing sent) and 20 clients
#             that send a request head a byte every 100 ms, each connecting
#             again as soon as the endpoint closes it, so that 220 are held
#             or being opened all along while the probes run;
#   churn     4 threads opening idle connections as fast as they can,
#             closing each after 50 ms;
#   garbage   1,000 requests that are not HTTP and 1,000 with a wrong token,
#             then the lines the daemon logged meanwhile are counted.
#
#   bench/admin-starve.sh                        # builds target/release/flagsd first
#   FLAGSD=target/debug/flagsd bench/admin-starve.sh
#   PROBES=10 FLAGSD=old/flagsd bench/admin-starve.sh   # fewer probes (each waits 10 s at most)
#
# Results: printed, and bench/results/10-admin-starve.md.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null || { echo "needs python3" >&2; exit 1; }
if [ -z "${FLAGSD:-}" ]; then
    cargo build --release --quiet
    FLAGSD=target/release/flagsd
fi
flagsd=$(realpath "$FLAGSD")
shown=$(realpath --relative-to=. "$flagsd")
results=$PWD/bench/results
mkdir -p "$results"

# shellcheck source=bench/lib.sh
source bench/lib.sh
scratch_dir /tmp admin-starve

port=$(free_port)
head -c 32 /dev/urandom | base64 >"$work/token"
cat >"$work/flagsd.toml" <<CONF
[state]
dir = "$work/state"
[admin]
listen = "127.0.0.1:$port"
token_file = "$work/token"
[[batch]]
name = "a"
codes = ["BR"]
server = "DEMO"
output = "$work/out"
CONF
"$flagsd" serve --config "$work/flagsd.toml" 2>"$work/daemon.log" &
pids+=($!)
for _ in $(seq 200); do
    grep -q "admin endpoint listening" "$work/daemon.log" && break
    sleep 0.05
done
grep -q "admin endpoint listening" "$work/daemon.log" || { cat "$work/daemon.log" >&2; exit 1; }

python3 - "$port" "$work/daemon.log" "$results/10-admin-starve.md" "$shown" "${PROBES:-100}" <<'PY'
import multiprocessing, socket, statistics, sys, threading, time

port, log_path, out_path, binary = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
PROBES = int(sys.argv[5])
addr = ("127.0.0.1", port)
TARGET_MS = 100.0


def probe():
    """Milliseconds to a whole answer to GET /healthz on a new connection, or None."""
    start = time.monotonic()
    try:
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
    except OSError:
        return None
    return (time.monotonic() - start) * 1000 if answer.startswith(b"HTTP/1.1 200") else None


def measure():
    times, failed = [], 0
    for _ in range(PROBES):
        t = probe()
        if t is None:
            failed += 1
        else:
            times.append(t)
        time.sleep(0.02)
    times.sort()
    if not times:
        return {"failed": failed}
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    return {"median": statistics.median(times), "p95": pick(0.95), "max": times[-1], "failed": failed}


stop = threading.Event()


def idle_client():
    """Holds an idle connection; connects again as soon as it is closed."""
    while not stop.is_set():
        try:
            with socket.create_connection(addr, timeout=5) as s:
                s.settimeout(0.5)
                while not stop.is_set():
                    try:
                        if not s.recv(4096):
                            break
                    except socket.timeout:
                        pass
        except OSError:
            pass


def slow_client():
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
    while not stop.is_set():
        try:
            with socket.create_connection(addr, timeout=5) as s:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    s.sendall(head[i:i + 1] if i < len(head) else b"a")
                    time.sleep(0.1)
        except OSError:
            pass


def churner():
    while not stop.is_set():
        try:
            s = socket.create_connection(addr, timeout=5)
            time.sleep(0.05)
            s.close()
        except OSError:
            pass


rows = []


def case(name, what):
    r = measure()
    rows.append((name, what, r))
    if "median" in r:
        verdict = "meets" if r["p95"] <= TARGET_MS and r["failed"] == 0 else "MISSES"
        print(f"{name:8} median {r['median']:7.1f} ms  p95 {r['p95']:7.1f} ms  max {r['max']:7.1f} ms  "
              f"failed {r['failed']}/{PROBES}  ({verdict} the {TARGET_MS:.0f} ms target)", flush=True)
    else:
        print(f"{name:8} every probe failed", flush=True)


case("quiet", "nothing else connects")

def attack(targets):
    """Runs `targets` in threads until the process is terminated (a process
    of its own: the probes must not wait for the attackers' interpreter
    lock, as a real probe, another process, does not)."""
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    threading.Event().wait()


def under(name, what, targets):
    child = multiprocessing.Process(target=attack, args=(targets,))
    child.start()
    time.sleep(1)
    case(name, what)
    child.terminate()
    child.join()


under("held", "200 idle connections and 20 slow clients, each reopened when closed",
      [idle_client] * 200 + [slow_client] * 20)
under("churn", "4 threads opening idle connections without pause", [churner] * 4)

time.sleep(1.5)
before = open(log_path).read().count("\n")
started = time.monotonic()
for _ in range(1000):
    try:
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nthis is no header\r\n\r\n")
            while s.recv(4096):
                pass
    except OSError:
        pass
for _ in range(1000):
    try:
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"GET /batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass
    except OSError:
        pass
flood_s = time.monotonic() - started
time.sleep(2.5)  # the last summaries come within a second or so
lines = open(log_path).read().splitlines()[before:]
errors = sum("ERROR" in l for l in lines)
print(f"garbage  2,000 bad requests in {flood_s:.1f} s: {len(lines)} log lines ({errors} at ERROR)")
for line in lines:
    print("         " + line)

with open(out_path, "w") as out:
    out.write("# The admin endpoint under a connection flood (bench/admin-starve.sh)\n\n")
    out.write(f"`GET /healthz` on a new connection each, {PROBES} probes per case, target {TARGET_MS:.0f} ms;"
              f" binary `{binary}`.\n\n")
    out.write("| case | load | median ms | p95 ms | max ms | failed |\n|---|---|---|---|---|---|\n")
    for name, what, r in rows:
        if "median" in r:
            out.write(f"| {name} | {what} | {r['median']:.1f} | {r['p95']:.1f} | {r['max']:.1f} | {r['failed']} |\n")
        else:
            out.write(f"| {name} | {what} | - | - | - | {r['failed']} |\n")
    out.write(f"\n2,000 bad requests (1,000 not HTTP, 1,000 with a wrong token) in {flood_s:.1f} s:"
              f" {len(lines)} log lines, {errors} at ERROR:\n\n```\n" + "\n".join(lines) + "\n```\n")
PY
