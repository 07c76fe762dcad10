# Shared by the bench scripts (sourced, not run). Expects $flagsd (the
# binary), $work (a scratch directory) and the array pids (killed on exit).

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
