#!/usr/bin/env bash
# shellcheck shell=bash
# Start a two-node Docker Swarm on this machine (a manager and a worker,
# each a private dockerd in a network namespace of its own, the two joined
# by a veth pair) for pycm's swarm tests.  Source it, then call:
#
#   source .ci/swarm-setup.sh
#   pycm_swarm_setup           # starts both engines, forms the swarm, imports
#                              # the test image on both, exports PYCM_SWARM_*
#   ...run the tests...
#   pycm_swarm_teardown [DIR]  # kills it all, removes namespaces and DIR
#
#   pycm_swarm_kill_worker [DIR]     # SIGKILL the worker's dockerd
#   pycm_swarm_restart_worker [DIR]  # start it again the same way; returns
#                                    # once the manager sees it Ready
#   pycm_swarm_diagnose [DIR]        # a short account, for a CI log
#
# Or as a script: `.ci/swarm-setup.sh setup [DIR]` prints `export ...` lines
# (for eval; `env DIR` prints them again for a running cluster),
# `.ci/swarm-setup.sh teardown DIR`, `kill-worker DIR`,
# `restart-worker DIR`, `diagnose DIR`.
#
# Exported after setup:
#   PYCM_SWARM_HOST            unix://DIR/manager/docker.sock, the manager's API
#   PYCM_SWARM_WORKER_HOST     unix://DIR/worker/docker.sock, the worker's own
#   PYCM_SWARM_MANAGER_NODE    the manager node's hostname, as Swarm reports it
#   PYCM_SWARM_WORKER_NODE     the worker node's hostname
#   PYCM_SWARM_WORKER_PIDFILE  the worker dockerd's pidfile (kill it there)
#   PYCM_SWARM_WORKER_NETNS    /run/netns/NAME, the worker's network namespace
#   PYCM_SWARM_WORKER_DOCKERD_ARGS  its dockerd command line
#   PYCM_SWARM_WORKER_RESTART  a command that starts the worker's dockerd
#                              again the same way (returns once it answers;
#                              the node is Ready a few seconds later)
#   PYCM_SWARM_DIR             DIR (for teardown)
#   PYCM_TEST_IMAGE            pycm-test/busybox:latest, imported on both nodes
#   PYCM_REQUIRE_SWARM         1: swarm tests fail instead of skipping
#
# The engines are those of .ci/docker-setup.sh (its functions: a containerd of
# each engine's own, vfs, --iptables=false --bridge=none), each started by
# `nsenter --net=` into its namespace (not `ip netns exec`, which remounts
# /sys and hides the cgroups) and `unshare --uts` (so each node has a
# hostname of its own).  The namespaces' only link is the veth pair between
# them (198.18.0.1 manager, 198.18.0.2 worker, a benchmarking range Docker's
# address pools do not use): no traffic leaves them, nothing changes in the
# host's network namespace.  Their names derive from DIR, so two clusters
# (in two directories) can run at once, and teardown finds everything from
# DIR alone.  Every docker call and every wait is bounded.  Takes ~15-40 s.

# shellcheck source=.ci/docker-setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/docker-setup.sh"
_pycm_swarm_script=$(readlink -f "${BASH_SOURCE[0]}")

_pycm_swarm_log() { echo "swarm-setup: $*" >&2; }

_pycm_swarm_manager_addr=198.18.0.1
_pycm_swarm_worker_addr=198.18.0.2

# _pycm_swarm_id DIR: a short tag for DIR's namespaces, veths and hostnames.
_pycm_swarm_id() {
    printf %s "$(readlink -m "$1")" | md5sum | cut -c1-6
}

# _pycm_swarm_netns DIR ROLE (manager|worker): the namespace's name.
_pycm_swarm_netns() { echo "pycm-swarm-$(_pycm_swarm_id "$1")-$2"; }

# _pycm_swarm_hostname DIR ROLE: the node's hostname.
_pycm_swarm_hostname() { echo "pycm-$(_pycm_swarm_id "$1")-$2"; }

# _pycm_swarm_docker DIR ROLE SECONDS ARGS...: docker on ROLE's engine, bounded.
_pycm_swarm_docker() {
    local dir=$1 role=$2 secs=$3
    shift 3
    timeout -k 5 "$secs" docker -H "unix://$dir/$role/docker.sock" "$@"
}

pycm_swarm_install() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    _pycm_static_busybox >/dev/null || missing+=(busybox-static)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v nsenter >/dev/null && command -v unshare >/dev/null || missing+=(util-linux)
    if [ "${#missing[@]}" -gt 0 ]; then
        _pycm_swarm_log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive timeout -k 10 300 apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive timeout -k 10 600 \
                apt-get install -y -qq "${missing[@]}" >&2
    fi
}

# pycm_swarm_network DIR: the two namespaces and the veth pair between them.
pycm_swarm_network() {
    local dir=$1 id m w
    id=$(_pycm_swarm_id "$dir")
    m=$(_pycm_swarm_netns "$dir" manager)
    w=$(_pycm_swarm_netns "$dir" worker)
    ip netns add "$m" && ip netns add "$w" || return 1
    # Created inside the manager's namespace, so no veth ever sits in the
    # host's; one end then moves to the worker's.
    ip -n "$m" link add "pcs${id}m" type veth peer name "pcs${id}w" netns "$w" || return 1
    ip -n "$m" addr add "$_pycm_swarm_manager_addr/30" dev "pcs${id}m" &&
        ip -n "$w" addr add "$_pycm_swarm_worker_addr/30" dev "pcs${id}w" &&
        ip -n "$m" link set lo up && ip -n "$w" link set lo up &&
        ip -n "$m" link set "pcs${id}m" up && ip -n "$w" link set "pcs${id}w" up
}

# pycm_swarm_start_engine DIR ROLE: ROLE's dockerd (docker-setup.sh's
# pycm_docker_start_engine on DIR/ROLE) in ROLE's namespace, with ROLE's
# hostname; returns once it answers.  Also how the worker is restarted.
pycm_swarm_start_engine() {
    local dir=$1 role=$2 ns name
    ns=$(_pycm_swarm_netns "$dir" "$role")
    name=$(_pycm_swarm_hostname "$dir" "$role")
    mkdir -p "$dir/$role"
    if [ -f "$dir/$role/dockerd.pid" ] && _pycm_alive "$(cat "$dir/$role/dockerd.pid")"; then
        return 0
    fi
    # The engine's command line, for PYCM_SWARM_WORKER_DOCKERD_ARGS.
    # shellcheck disable=SC2016
    timeout -k 5 90 nsenter --net="/run/netns/$ns" unshare --uts -- bash -c '
        hostname "$1" && source "$2" && pycm_docker_start_engine "$3" &&
            printf "%s\n" "$PYCM_DOCKERD_ARGS" >"$3/dockerd.args"' \
        swarm-engine "$name" "$(dirname "$_pycm_swarm_script")/docker-setup.sh" "$dir/$role"
}

# _pycm_swarm_wait_ready DIR SECONDS: until the manager lists both nodes
# Ready (with a live engine); fails after SECONDS.
_pycm_swarm_wait_ready() {
    local dir=$1 secs=$2 deadline states
    deadline=$((SECONDS + secs))
    while [ "$SECONDS" -lt "$deadline" ]; do
        states=$(_pycm_swarm_docker "$dir" manager 10 node ls \
            --format '{{.Hostname}} {{.Status}}' 2>/dev/null) || states=
        if [ "$(echo "$states" | grep -c ' Ready$')" = 2 ]; then
            return 0
        fi
        sleep 0.5
    done
    _pycm_swarm_log "the nodes are not both Ready after ${secs}s: ${states:-no answer}"
    return 1
}

# pycm_swarm_form DIR: swarm init on the manager, join the worker.
pycm_swarm_form() {
    local dir=$1 token
    # A heartbeat of 2 s (default 5 s): a killed node is Down in ~6 s, not ~15.
    _pycm_swarm_docker "$dir" manager 60 swarm init \
        --advertise-addr "$_pycm_swarm_manager_addr" \
        --listen-addr "$_pycm_swarm_manager_addr:2377" \
        --dispatcher-heartbeat 2s >/dev/null || return 1
    token=$(_pycm_swarm_docker "$dir" manager 30 swarm join-token -q worker) || return 1
    _pycm_swarm_docker "$dir" worker 60 swarm join \
        --advertise-addr "$_pycm_swarm_worker_addr" \
        --listen-addr "$_pycm_swarm_worker_addr:2377" \
        --token "$token" "$_pycm_swarm_manager_addr:2377" >/dev/null || return 1
    _pycm_swarm_wait_ready "$dir" 60
}

# _pycm_swarm_export DIR: set and export the PYCM_SWARM_* variables.
_pycm_swarm_export() {
    local dir=$1
    export PYCM_SWARM_DIR=$dir
    export PYCM_SWARM_HOST=unix://$dir/manager/docker.sock
    export PYCM_SWARM_WORKER_HOST=unix://$dir/worker/docker.sock
    PYCM_SWARM_MANAGER_NODE=$(_pycm_swarm_hostname "$dir" manager)
    PYCM_SWARM_WORKER_NODE=$(_pycm_swarm_hostname "$dir" worker)
    export PYCM_SWARM_MANAGER_NODE PYCM_SWARM_WORKER_NODE
    export PYCM_SWARM_WORKER_PIDFILE=$dir/worker/dockerd.pid
    PYCM_SWARM_WORKER_NETNS=/run/netns/$(_pycm_swarm_netns "$dir" worker)
    export PYCM_SWARM_WORKER_NETNS
    PYCM_SWARM_WORKER_DOCKERD_ARGS=$(cat "$dir/worker/dockerd.args" 2>/dev/null)
    export PYCM_SWARM_WORKER_DOCKERD_ARGS
    PYCM_SWARM_WORKER_RESTART="bash $(printf %q "$_pycm_swarm_script") start-worker $(printf %q "$dir")"
    export PYCM_SWARM_WORKER_RESTART
    export PYCM_TEST_IMAGE=pycm-test/busybox:latest
    export PYCM_REQUIRE_SWARM=1
}

# Those teardown unsets (with PYCM_TEST_IMAGE and PYCM_REQUIRE_SWARM, printed
# by `setup` too: the private Docker engine shares the first).
_pycm_swarm_own_vars="PYCM_SWARM_DIR PYCM_SWARM_HOST PYCM_SWARM_WORKER_HOST PYCM_SWARM_MANAGER_NODE
PYCM_SWARM_WORKER_NODE PYCM_SWARM_WORKER_PIDFILE PYCM_SWARM_WORKER_NETNS
PYCM_SWARM_WORKER_DOCKERD_ARGS PYCM_SWARM_WORKER_RESTART"
_pycm_swarm_vars="$_pycm_swarm_own_vars PYCM_TEST_IMAGE PYCM_REQUIRE_SWARM"

# pycm_swarm_setup [DIR]: the whole cluster (DIR: PYCM_SWARM_DIR, else a new
# mktemp -d under /tmp); on failure, tears down what it started.
pycm_swarm_setup() {
    pycm_swarm_install || return 1
    local dir=${1:-${PYCM_SWARM_DIR:-}} start=$SECONDS
    [ -n "$dir" ] || dir=$(mktemp -d /tmp/pycm-swarm.XXXXXX)
    mkdir -p "$dir" && dir=$(readlink -f "$dir")
    if ip netns list | grep -q "^$(_pycm_swarm_netns "$dir" manager)\b"; then
        _pycm_swarm_log "$dir has a swarm already (pycm_swarm_teardown $dir first)"
        return 1
    fi
    if pycm_swarm_network "$dir" &&
        pycm_swarm_start_engine "$dir" manager &&
        pycm_swarm_start_engine "$dir" worker &&
        pycm_swarm_form "$dir" &&
        pycm_docker_build_image "$dir/manager" "unix://$dir/manager/docker.sock" \
            pycm-test/busybox:latest &&
        pycm_docker_build_image "$dir/worker" "unix://$dir/worker/docker.sock" \
            pycm-test/busybox:latest; then
        _pycm_swarm_export "$dir"
        _pycm_swarm_log "manager $PYCM_SWARM_MANAGER_NODE at $PYCM_SWARM_HOST, worker" \
            "$PYCM_SWARM_WORKER_NODE at $PYCM_SWARM_WORKER_HOST ($((SECONDS - start)) s)"
        return 0
    fi
    _pycm_swarm_log "setup failed in $dir"
    pycm_swarm_diagnose "$dir" >&2
    pycm_swarm_teardown "$dir"
    return 1
}

# pycm_swarm_kill_worker [DIR]: SIGKILL the worker's dockerd (its containerd,
# shims and containers go on running, as on a node whose engine crashed).
pycm_swarm_kill_worker() {
    local dir=${1:-${PYCM_SWARM_DIR:-}} pid _
    pid=$(cat "$dir/worker/dockerd.pid" 2>/dev/null) || return 0
    kill -9 "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        _pycm_alive "$pid" || return 0
        sleep 0.1
    done
    _pycm_swarm_log "the worker's dockerd ($pid) outlived SIGKILL"
    return 1
}

# pycm_swarm_restart_worker [DIR]: start the worker's dockerd again (if it is
# not running) and wait until the manager sees both nodes Ready.
pycm_swarm_restart_worker() {
    local dir=${1:-${PYCM_SWARM_DIR:-}}
    pycm_swarm_start_engine "$dir" worker && _pycm_swarm_wait_ready "$dir" 90
}

# pycm_swarm_diagnose [DIR]: nodes, services, and each engine's diagnostics.
pycm_swarm_diagnose() {
    local dir=${1:-${PYCM_SWARM_DIR:-}} role
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    echo "== swarm diagnostics ($dir)"
    echo "-- nodes"
    _pycm_swarm_docker "$dir" manager 10 node ls 2>&1 | head -n 10 || true
    echo "-- services"
    _pycm_swarm_docker "$dir" manager 10 service ls 2>&1 | head -n 20 || true
    echo "-- tasks not running"
    _pycm_swarm_docker "$dir" manager 10 node ps --filter desired-state=running \
        --format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' \
        "$(_pycm_swarm_hostname "$dir" manager)" "$(_pycm_swarm_hostname "$dir" worker)" \
        2>&1 | grep -v ' Running ' | head -n 20 || true
    for role in manager worker; do
        echo "-- the $role's engine"
        pycm_docker_diagnose "$dir/$role" | tail -n +2 || true
    done
    return 0
}

# pycm_swarm_teardown [DIR]: kill both engines, their containerds, shims and
# containers, remove the namespaces (and with them the veths) and DIR.
# Bounded even when the engines hang: nothing here waits on them for long.
pycm_swarm_teardown() {
    local dir=${1:-${PYCM_SWARM_DIR:-}} role ns pid pids=()
    [ -n "$dir" ] || return 0
    dir=$(readlink -m "$dir")
    # Both engines at once (each waits ~30 s at most when it hangs), in
    # subshells: docker-setup's teardown unsets the caller's PYCM_* variables.
    for role in worker manager; do
        if [ -d "$dir/$role" ]; then
            (pycm_docker_teardown "$dir/$role") &
            pids+=($!)
        fi
    done
    [ "${#pids[@]}" -eq 0 ] || wait "${pids[@]}" || true
    for role in worker manager; do
        ns=$(_pycm_swarm_netns "$dir" "$role")
        # Anything still in the namespace (a stray process) would keep it alive.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -9 "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$dir" 2>/dev/null || true
    if [ "${PYCM_SWARM_DIR:-}" = "$dir" ]; then
        # shellcheck disable=SC2086
        unset $_pycm_swarm_own_vars
    fi
    return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    case "${1:-}" in
    setup)
        pycm_swarm_setup "${2:-}" >&2 || exit 1
        for v in $_pycm_swarm_vars; do
            printf 'export %s=%q\n' "$v" "${!v}"
        done
        ;;
    env)
        _pycm_swarm_export "${2:-${PYCM_SWARM_DIR:-}}"
        for v in $_pycm_swarm_vars; do
            printf 'export %s=%q\n' "$v" "${!v}"
        done
        ;;
    teardown) pycm_swarm_teardown "${2:-${PYCM_SWARM_DIR:-}}" ;;
    kill-worker) pycm_swarm_kill_worker "${2:-${PYCM_SWARM_DIR:-}}" ;;
    start-worker) pycm_swarm_start_engine "${2:-${PYCM_SWARM_DIR:-}}" worker ;;
    restart-worker) pycm_swarm_restart_worker "${2:-${PYCM_SWARM_DIR:-}}" ;;
    diagnose) pycm_swarm_diagnose "${2:-${PYCM_SWARM_DIR:-}}" ;;
    *)
        echo "usage: $0 setup|env|teardown|kill-worker|start-worker|restart-worker|diagnose [DIR]" >&2
        exit 2
        ;;
    esac
fi
