# Shared by the bench scripts (sourced, not run). Expects $flagsd (the
# binary), $work (a scratch directory) and the array pids (killed on exit);
# start_nginx also $nginx_bin.

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

# start_nginx: serves assets/flags with nginx on a free loopback port; sets nginx_url.
start_nginx() {
    mkdir -p "$work/www" "$work/nginx"
    cp -r assets/flags "$work/www/"
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    server { listen 127.0.0.1:$port; root $work/www; }
}
CONF
    "$nginx_bin" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log"
    nginx_url="http://127.0.0.1:$port/flags"
}
