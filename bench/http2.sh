#!/usr/bin/env bash
# flagsd over HTTPS, HTTP/1.1 against HTTP/2: one nginx serves assets/flags on
# two loopback ports with the same certificate, one offering only HTTP/1.1
# and one offering h2 by ALPN. `flagsd fetch -e` (676 URLs, 194 of them
# flags) runs against each with pools of 100, 10 and 1, and curl --parallel
# with 100 for reference, timed by hyperfine; files go to tmpfs. A throwaway
# CA and a certificate for 127.0.0.1 are made with openssl in the scratch
# directory, which is removed on exit. After the timed runs, one more run of
# each case is matched against nginx's access log: how many TCP connections
# served its 676 requests, and with which protocol. Last, six batches of
# `flagsd run` over HTTP/2 against a port that closes each connection after
# 500 requests count the connections that reconnecting costs, and the codes
# lost to it (retries = 0).
#
#   bench/http2.sh                        # builds target/release/flagsd first
#   FLAGSD=/path/to/flagsd bench/http2.sh # an existing binary (needs --cacert)
#   RUNS=20 bench/http2.sh                # more runs (default 10)
#
# Results: bench/results/9-http2.json (hyperfine) and 9-http2.md.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-10}
for tool in hyperfine curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "${FLAGSD:-}" ]; then
    cargo build --release --quiet
    FLAGSD=target/release/flagsd
fi
flagsd=$(realpath "$FLAGSD")
"$flagsd" fetch --help | grep -q -- --cacert || { echo "$flagsd has no --cacert" >&2; exit 1; }
results=$PWD/bench/results
mkdir -p "$results"

# shellcheck source=bench/lib.sh
source bench/lib.sh
scratch_dir /dev/shm http2

# --- a CA and a server certificate for 127.0.0.1, valid for a day -------------
tls=$work/tls
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=flagsd bench CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 1 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
cacert=$tls/ca.pem

# --- one nginx, two ports: h1 (HTTP/1.1 only) and h2 (h2 offered by ALPN) -----
h1_port=$(free_port)
h2_port=$(free_port)
h2_short_port=$(free_port)
nginx_version=$("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //')
# `http2 on;` arrived in nginx 1.25.1; before it, http2 is a parameter of listen.
if [ "$(printf '%s\n' 1.25.1 "${nginx_version#nginx/}" | sort -V | head -1)" = 1.25.1 ]; then
    h1_listen="listen 127.0.0.1:$h1_port ssl; http2 off;"
    h2_listen="listen 127.0.0.1:$h2_port ssl; http2 on;"
    h2_short_listen="listen 127.0.0.1:$h2_short_port ssl; http2 on;"
else
    h1_listen="listen 127.0.0.1:$h1_port ssl;"
    h2_listen="listen 127.0.0.1:$h2_port ssl http2;"
    h2_short_listen="listen 127.0.0.1:$h2_short_port ssl http2;"
fi
nginx_serve "    log_format conn '\$connection \$server_protocol \$status';
    ssl_certificate $tls/server.pem;
    ssl_certificate_key $tls/server.key;
    server { $h1_listen access_log $work/nginx/h1.log conn; }
    server { $h2_listen access_log $work/nginx/h2.log conn; }
    server { $h2_short_listen access_log $work/nginx/h2-short.log conn; keepalive_requests 500; }"
base_h1=https://127.0.0.1:$h1_port/flags
base_h2=https://127.0.0.1:$h2_port/flags

# --- the cases: name, server (h1 or h2), command line ------------------------
out=$work/out
python3 -c 'import string as s; [print(f"url = \"{b}/{x}{y}/{x}{y}.gif\"") for b in ["BASE"] for x in s.ascii_lowercase for y in s.ascii_lowercase]' >"$work/urls.tmpl"
names=() servers=() cmds=()
add() { names+=("$1"); servers+=("$2"); cmds+=("$3"); }
for pool in 100 10 1; do
    for v in h1 h2; do
        base=base_$v
        add "flagsd $v -m $pool" "$v" "$flagsd fetch -e -m $pool -s ${!base} --cacert $cacert -o $out"
    done
done
for v in h1 h2; do
    base=base_$v
    sed "s|BASE|${!base}|" "$work/urls.tmpl" >"$work/curl-$v.cfg"
    flag=$([ "$v" = h1 ] && echo --http1.1 || echo --http2)
    # --fail-with-body, not -f: over HTTP/1.1, -f closes the connection after
    # every 404 (about 480 TLS handshakes instead of 100). It saves the 482
    # error pages too, and exits 22.
    add "curl $v --parallel-max 100" "$v" "curl -s --fail-with-body $flag --cacert $cacert --parallel --parallel-max 100 --remote-name-all --create-dirs --output-dir $out -K $work/curl-$v.cfg"
done

# --- timed runs -----------------------------------------------------------------
args=()
for i in "${!names[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
echo "== $nginx_version, $runs runs of ${#names[@]} cases"
hyperfine -N -i --runs "$runs" --warmup 2 --style none --prepare "rm -rf $out" \
    --export-json "$results/9-http2.json" "${args[@]}" >/dev/null

# --- one more run of each, against the access log ------------------------------
: >"$work/counts.tsv"
for i in "${!names[@]}"; do
    log=$work/nginx/${servers[$i]}.log
    rm -rf "$out"
    : >"$log"
    ${cmds[$i]} >/dev/null 2>&1 || true
    saved=$(grep -rl --binary-files=text -m 1 '^GIF8' "$out" | wc -l)
    [ "$saved" -eq 194 ] || { echo "!! ${names[$i]} saved $saved flags, expected 194" >&2; exit 1; }
    # connections, requests, protocols seen (comma-separated)
    awk -v name="${names[$i]}" '{ c[$1] = 1; p[$2] = 1; n++ }
        END { nc = 0; for (k in c) nc++; ps = ""; for (k in p) ps = ps (ps ? "," : "") k
              printf "%s\t%d\t%d\t%s\n", name, nc, n, ps }' "$log" >>"$work/counts.tsv"
done

# --- reconnects: six batches of `run` (pools of 50) over HTTP/2 against a port
# that closes each connection after 500 requests, as nginx does after 1,000 by
# default: how many connections carry the 4,056 requests -------------------------
{
    printf '[servers]\nH2 = { url = "https://127.0.0.1:%s/flags", ca_file = "%s" }\n' "$h2_short_port" "$cacert"
    printf '[state]\ndir = "%s/state"\n' "$work"
    printf '[defaults]\nmax_req = 50\noutput = "%s"\nretries = 0\n' "$out"
    for i in 1 2 3 4 5 6; do printf '\n[[batch]]\nname = "b%s"\ncodes = "every"\nserver = "H2"\n' "$i"; done
} >"$work/reconnects.toml"
rm -rf "$out"
"$flagsd" run --config "$work/reconnects.toml" --json >"$work/reconnects.json" 2>/dev/null || true
failed=$(python3 -c 'import json, sys; print(sum(b["counts"]["errors"] for b in json.load(open(sys.argv[1]))["batches"]))' \
    "$work/reconnects.json")
reconnects=$(awk '{ c[$1] = 1; n++ } END { nc = 0; for (k in c) nc++; printf "%d connections for %d requests", nc, n }' \
    "$work/nginx/h2-short.log")
reconnects="$reconnects, $failed failed codes"

python3 - "$results/9-http2.json" "$work/counts.tsv" "$nginx_version" "$runs" "$reconnects" >"$results/9-http2.md" <<'PY'
import json, os, sys
results = json.load(open(sys.argv[1]))["results"]
counts = {}
for line in open(sys.argv[2]):
    name, conns, reqs, protos = line.rstrip("\n").split("\t")
    counts[name] = (int(conns), int(reqs), protos)
print(f"### 9-http2: 676 URLs over HTTPS from {sys.argv[3]} (1 worker), "
      f"HTTP/1.1 against h2, {sys.argv[4]} runs, {os.cpu_count()} cores\n")
print("| case | mean ± σ | median | min | client CPU (user+sys) | connections | requests | protocol |")
print("|---|---|---|---|---|---|---|---|")
for r in results:
    conns, reqs, protos = counts[r["command"]]
    print(f"| {r['command']} | {r['mean'] * 1000:.1f} ± {r['stddev'] * 1000:.1f} ms "
          f"| {r['median'] * 1000:.1f} ms | {r['min'] * 1000:.1f} ms | {(r['user'] + r['system']) * 1000:.1f} ms "
          f"| {conns} | {reqs} | {protos} |")
conn = lambda n: f"{n} connection{'s' if n != 1 else ''}"
h1, h2 = counts["flagsd h1 -m 100"], counts["flagsd h2 -m 100"]
print(f"\nflagsd -m 100: HTTP/1.1: {conn(h1[0])} for {h1[1]} requests; "
      f"HTTP/2: {conn(h2[0])} for {h2[1]} requests ({h2[2]}).")
print(f"\nflagsd run, 6 batches x 676 codes over HTTP/2, the server closing each connection "
      f"after 500 requests: {sys.argv[5]}.")
print("\nConnections and protocol: one extra run of each case, counted in nginx's access "
      "log ($connection, $server_protocol). CPU is the client's, as hyperfine measures it.")
PY
echo
cat "$results/9-http2.md"
