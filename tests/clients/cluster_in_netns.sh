#!/bin/sh
# Runs tests/clients/cluster.py in this network namespace. Meant to be started as
# `unshare -n sh cluster_in_netns.sh …`: only loopback exists, so the cluster's fixed ports are
# free and nothing can reach the real service.
#
# usage: cluster_in_netns.sh WASMBOX_BIN DATA_DIR PYTHON
set -u
bin=$1 data=$2 python=$3
here=$(cd "$(dirname "$0")" && pwd)

ip link set lo up || exit 90
if ip -o link show | grep -v ': lo:' | grep -q .; then
    echo "cluster_in_netns: not in a loopback-only namespace" >&2
    exit 91
fi
export NO_PROXY='*' no_proxy='*'
"$python" "$here/cluster.py" "$bin" "$data"
status=$?
if [ "$status" -ne 0 ]; then
    for log in "$data"/*.log; do
        echo "== $log"
        tail -n 60 "$log"
    done
fi
exit "$status"
