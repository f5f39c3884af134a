#!/bin/sh
# Runs the official-client scripts against a fresh `wasmbox serve`, both inside this network
# namespace. Meant to be started as `unshare -n sh run_in_netns.sh …` so that only loopback
# exists and nothing can reach the real service.
#
# usage: run_in_netns.sh WASMBOX_BIN DATA_DIR PYTHON NODE_PATH
set -u
bin=$1 data=$2 python=$3 node_path=$4
here=$(cd "$(dirname "$0")" && pwd)

ip link set lo up || exit 90
if ip -o link show | grep -v ': lo:' | grep -q .; then
    echo "run_in_netns: not in a loopback-only namespace" >&2
    exit 91
fi

# start_server LOG DIR [FLAGS…]: starts `wasmbox serve` in the background; sets $server and $url.
start_server() {
    log=$1 dir=$2
    shift 2
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir" --api-key wasmbox-client-test "$@" 2>"$log" &
    server=$!
    url=
    for _ in $(seq 1 300); do
        url=$(sed -n 's/^wasmbox: listening on //p' "$log")
        [ -n "$url" ] && break
        sleep 0.1
    done
    if [ -z "$url" ]; then
        echo "run_in_netns: server did not start" >&2
        cat "$log" >&2
        kill "$server" 2>/dev/null
        exit 92
    fi
    echo "run_in_netns: server at $url"
}

log="$data/server.log"
start_server "$log" "$data/server"

export WASMBOX_URL="$url" HOPX_API_KEY=wasmbox-client-test NO_PROXY='*' no_proxy='*'
status=0
echo "== python (hopx-ai)"
"$python" "$here/python_client.py" || status=1
echo "== python async (hopx-ai AsyncSandbox)"
"$python" "$here/python_async_client.py" || status=1
echo "== node (@hopx-ai/sdk)"
NODE_PATH="$node_path" node "$here/node_client.js" || status=1

kill -TERM "$server"
wait "$server" || status=1
if [ "$status" -ne 0 ]; then
    echo "== server log"
    cat "$log"
fi

# The same server behind HTTPS (`--tls-cert/--tls-key`), a self-signed certificate the client
# trusts through SSL_CERT_FILE.
echo "== python (hopx-ai) over https"
tls="$data/tls"
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null || exit 93
tls_log="$data/server-tls.log"
start_server "$tls_log" "$data/server-tls" --tls-cert "$tls/cert.pem" --tls-key "$tls/key.pem"
WASMBOX_URL="$url" SSL_CERT_FILE="$tls/cert.pem" "$python" "$here/tls_client.py" || status=1
kill -TERM "$server"
wait "$server" || status=1
if [ "$status" -ne 0 ]; then
    echo "== tls server log"
    cat "$tls_log"
fi
exit "$status"
