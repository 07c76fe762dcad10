# Shared by the bench scripts (sourced, not run). Expects $flagsd (the
# binary), $work (a scratch directory) and the array pids (killed on exit);
# start_nginx and start_fast_server also $nginx_bin.

# need_debian COMMAND[:PACKAGE]...: installs from Debian the package of each
# COMMAND that is not installed (PACKAGE when it is named otherwise).
need_debian() {
    local tool command missing=()
    for tool in "$@"; do
        command=${tool%%:*}
        [ -x "$(command -v "$command")" ] || [ -x "/usr/sbin/$command" ] || [ -x "/usr/bin/$command" ] ||
            missing+=("${tool#*:}")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "== installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# scratch_dir PARENT NAME [PATH...]: makes the scratch directory $work under
# PARENT (readable by nginx's unprivileged workers) and, on exit, stops every
# server started here and removes $work and the PATHs.
scratch_dir() {
    local parent=$1 name=$2
    shift 2
    work=$(mktemp -d "$parent/flagsd-$name.XXXXXX")
    chmod 755 "$work"
    pids=()
    scratch_extra=("$@")
    trap 'stop_servers; rm -rf "$work" "${scratch_extra[@]}"' EXIT
}

# stop_servers: stops every server started here (for the scripts' exit traps).
stop_servers() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
}

# start_testserver NAME ARGS...: starts `flagsd testserver ARGS` on a free
# loopback port, waits for the URL it prints, and sets ${NAME}_url.
start_testserver() {
    local name=$1
    shift
    "$flagsd" testserver --bind 127.0.0.1:0 "$@" >"$work/$name.out" &
    pids+=($!)
    local url=
    for _ in $(seq 200); do
        url=$(awk '/^Serving flags at /{print $4}' "$work/$name.out")
        [ -n "$url" ] && break
        sleep 0.05
    done
    [ -n "$url" ] || { echo "test server $name did not start" >&2; exit 1; }
    printf -v "${name}_url" '%s' "$url"
}

# free_port: a free loopback TCP port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# nginx_serve HTTP: starts nginx (one worker, files in $work) with assets/flags
# under $work/www and HTTP (directives, server blocks) in its http block.
nginx_serve() {
    mkdir -p "$work/www" "$work/nginx"
    cp -r assets/flags "$work/www/"
    local t temp_paths=
    for t in client_body proxy fastcgi uwsgi scgi; do temp_paths+="    ${t}_temp_path $work/nginx;"$'\n'; done
    cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 4096; }
http {
    keepalive_requests 100000;
    root $work/www;
$temp_paths$1
}
CONF
    "$nginx_bin" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log"
}

# start_fast_server: nginx when installed, else the test server; sets
# fast_server_url.
start_fast_server() {
    if [ -x "$nginx_bin" ]; then
        start_nginx
        fast_server_url=$nginx_url
    else
        start_testserver fast --workers 2
        fast_server_url=$fast_url
    fi
}

# start_nginx: serves assets/flags with nginx on a free loopback port; sets nginx_url.
start_nginx() {
    local port
    port=$(free_port)
    nginx_serve "    access_log off;
    server { listen 127.0.0.1:$port; }"
    nginx_url="http://127.0.0.1:$port/flags"
}
