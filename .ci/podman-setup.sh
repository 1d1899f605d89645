#!/usr/bin/env bash
# shellcheck shell=bash
# Start a private Podman service (Podman's Docker-compatible API on a socket
# of its own, and a loopback registry) for running pycm's docker-backend
# tests against Podman.  Source it, then call the functions:
#
#   source .ci/podman-setup.sh
#   pycm_podman_setup      # installs if needed, starts the service and a
#                          # registry, imports the test image, exports
#                          # PYCM_PODMAN_* variables
#   PYCM_DOCKER_HOST=$PYCM_PODMAN_HOST PYCM_TEST_REGISTRY=$PYCM_PODMAN_REGISTRY \
#       tox -e tests -- tests.test_docker_conformance ...
#   pycm_podman_teardown   # stops it all, unmounts, removes the directory
#
# Or as a script: `.ci/podman-setup.sh setup` prints `export ...` lines,
# `.ci/podman-setup.sh teardown DIR` stops what `setup` started in DIR.
#
# Exported after setup:
#   PYCM_PODMAN_HOST      unix://DIR/podman.sock, the service
#   PYCM_PODMAN_REGISTRY  127.0.0.1:PORT, a registry holding
#                         PORT/pycm-test/busybox:latest for pull tests
#   PYCM_PODMAN_DIR       the private directory (for teardown)
#   PYCM_TEST_IMAGE       pycm-test/busybox:latest (the same as on dockerd)
#
# Everything Podman keeps lives in DIR (default a mktemp -d under /tmp): its
# storage (vfs, so no overlay or fuse is needed), run root, temporary files,
# event log (a file, not the journal) and its configuration files, passed
# in CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF
# to the service (the `podman container cleanup` processes conmon starts
# inherit them).  Nothing under /etc/containers or /var/lib/containers is
# used or changed.  Debian 12's Podman (4.3) needs catatonit for --init.
# Every step is bounded by `timeout`.  Takes ~5-10 s once installed.

# The helpers shared with the dockerd set-up (_pycm_alive, _pycm_kill_under,
# _pycm_static_busybox, pycm_docker_start_registry, _pycm_free_port).
# shellcheck source=.ci/docker-setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/docker-setup.sh"

_pycm_podman_log() { echo "podman-setup: $*" >&2; }

pycm_podman_install() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    [ -x /usr/bin/catatonit ] || [ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
    command -v newuidmap >/dev/null || missing+=(uidmap)
    _pycm_static_busybox >/dev/null || missing+=(busybox-static)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    if [ "${#missing[@]}" -gt 0 ]; then
        _pycm_podman_log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive timeout -k 10 300 apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive timeout -k 10 600 \
                apt-get install -y -qq "${missing[@]}" >&2
    fi
}

# pycm_podman_configure DIR [REGISTRY]: write DIR's configuration files.
pycm_podman_configure() {
    local dir=$1 registry=${2:-} init=/usr/bin/catatonit
    [ -x "$init" ] || init=/usr/libexec/podman/catatonit
    mkdir -p "$dir/root" "$dir/run" "$dir/tmp" "$dir/networks"
    # default_ulimits: the sandbox's hard limits refuse Podman's defaults
    # (nofile 1048576).  netns "none": no bridge or iptables here (the
    # tests ask for --network none anyway).  cgroupfs, and events in a
    # file: there is no systemd.
    cat >"$dir/containers.conf" <<END_OF_CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"
init_path = "$init"

[network]
network_config_dir = "$dir/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
tmp_dir = "$dir/tmp"
image_copy_tmp_dir = "$dir/tmp"
volume_path = "$dir/root/volumes"
END_OF_CONF
    cat >"$dir/storage.conf" <<END_OF_CONF
[storage]
driver = "vfs"
graphroot = "$dir/root"
runroot = "$dir/run"
END_OF_CONF
    {
        echo 'unqualified-search-registries = []'
        if [ -n "$registry" ]; then
            printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$registry"
        fi
    } >"$dir/registries.conf"
}

# _pycm_podman_cmd DIR: set the array _pycm_podman_argv to the podman
# command of DIR's service (for `timeout -k 5 60 "${_pycm_podman_argv[@]}" ...`:
# timeout runs programs, not shell functions).
_pycm_podman_cmd() {
    local dir=$1
    _pycm_podman_argv=(env "CONTAINERS_CONF=$dir/containers.conf"
        "CONTAINERS_STORAGE_CONF=$dir/storage.conf"
        "CONTAINERS_REGISTRIES_CONF=$dir/registries.conf"
        podman --root "$dir/root" --runroot "$dir/run" --storage-driver vfs
        --tmpdir "$dir/tmp" --cgroup-manager cgroupfs --events-backend file)
}

# pycm_podman_start_service DIR: `podman system service` on DIR/podman.sock.
pycm_podman_start_service() {
    local dir=$1 pid i
    rm -f "$dir/podman.sock"
    _pycm_podman_cmd "$dir"
    # --time=0: the service never exits for want of clients.  From DIR:
    # conmon writes an `oom` file into its working directory when the
    # kernel's OOM killer strikes (and Podman 4.3 reads none back).
    (cd "$dir" && exec "${_pycm_podman_argv[@]}" system service --time=0 \
        "unix://$dir/podman.sock") </dev/null >>"$dir/podman.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/podman.pid"
    for i in $(seq 1 100); do
        if [ -S "$dir/podman.sock" ] &&
            timeout -k 2 5 curl -sf --unix-socket "$dir/podman.sock" http://podman/_ping \
                >/dev/null 2>&1; then
            return 0
        fi
        _pycm_alive "$pid" || break
        sleep 0.1
    done
    _pycm_podman_log "podman system service did not answer; its log:"
    tail -n 30 "$dir/podman.log" >&2
    return 1
}

# pycm_podman_build_image DIR TAG: podman import a busybox root fs (the
# same image as pycm_docker_build_image's).
pycm_podman_build_image() {
    local dir=$1 tag=$2 bb root
    bb=$(_pycm_static_busybox) || {
        _pycm_podman_log "no statically linked busybox (apt-get install busybox-static)"
        return 1
    }
    root="$dir/rootfs"
    _pycm_busybox_rootfs "$bb" "$root"
    _pycm_podman_cmd "$dir"
    tar -C "$root" -c . | timeout -k 5 120 "${_pycm_podman_argv[@]}" import -q \
        -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$tag" >/dev/null || {
        rm -rf "$root"
        return 1
    }
    rm -rf "$root"
}

pycm_podman_setup() {
    command -v curl >/dev/null || {
        _pycm_podman_log "curl is needed"
        return 1
    }
    pycm_podman_install || return 1
    local dir=${PYCM_PODMAN_DIR:-$(mktemp -d /tmp/pycm-podman.XXXXXX)}
    local image=pycm-test/busybox:latest port
    # Known to teardown from here on, whatever fails below.
    export PYCM_PODMAN_DIR=$dir
    port=$(_pycm_free_port)
    pycm_podman_configure "$dir" "127.0.0.1:$port" || return 1
    pycm_podman_build_image "$dir" "$image" || return 1
    pycm_docker_start_registry "$dir" "$port" || return 1
    _pycm_podman_cmd "$dir"
    timeout -k 5 120 "${_pycm_podman_argv[@]}" push -q "$image" \
        "docker://127.0.0.1:$port/$image" >/dev/null || return 1
    pycm_podman_start_service "$dir" || return 1
    export PYCM_PODMAN_HOST="unix://$dir/podman.sock"
    export PYCM_PODMAN_REGISTRY=127.0.0.1:$port
    export PYCM_TEST_IMAGE=$image
    _pycm_podman_log "podman $(podman --version | awk '{print $3}') at $PYCM_PODMAN_HOST," \
        "registry at 127.0.0.1:$port, image $image"
}

# pycm_podman_diagnose [DIR]: a short account of the service, for CI logs.
pycm_podman_diagnose() {
    local dir=${1:-${PYCM_PODMAN_DIR:-}}
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    echo "== podman diagnostics ($dir)"
    if timeout -k 2 5 curl -sf --unix-socket "$dir/podman.sock" http://podman/_ping \
        >/dev/null 2>&1; then
        _pycm_podman_cmd "$dir"
        echo "service answers; containers: $(timeout -k 2 10 "${_pycm_podman_argv[@]}" \
            ps -aq 2>/dev/null | wc -l)"
    else
        echo "service does NOT answer within 5 s"
    fi
    echo "-- podman.log, its last errors and warnings"
    grep -E 'level=(error|warning|fatal)' "$dir/podman.log" 2>/dev/null | tail -n 8 |
        cut -c1-300 || true
    return 0
}

# pycm_podman_teardown [DIR]: stop the service, conmon and the containers
# and the registry, unmount what is mounted under DIR, remove DIR.
pycm_podman_teardown() {
    local dir=${1:-${PYCM_PODMAN_DIR:-}} pid i f m
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    if [ -f "$dir/containers.conf" ]; then
        # Bounded: what still runs is killed below.
        _pycm_podman_cmd "$dir"
        timeout -k 5 60 "${_pycm_podman_argv[@]}" rm -af -t 0 >/dev/null 2>&1 || true
    fi
    for f in "$dir/registry.pid" "$dir/podman.pid"; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || continue
        for i in $(seq 1 100); do
            _pycm_alive "$pid" || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    # conmon, its containers, and cleanup processes name DIR on their
    # command lines (or descend from what does).
    _pycm_kill_under "$dir"
    # Containers' /dev/shm and the like; deepest first.
    for m in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$dir" 2>/dev/null || true
    unset PYCM_PODMAN_HOST PYCM_PODMAN_REGISTRY PYCM_PODMAN_DIR
    return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    case "${1:-}" in
    setup)
        pycm_podman_setup >&2 || exit 1
        for v in PYCM_PODMAN_DIR PYCM_PODMAN_HOST PYCM_PODMAN_REGISTRY PYCM_TEST_IMAGE; do
            printf 'export %s=%q\n' "$v" "${!v}"
        done
        ;;
    teardown) pycm_podman_teardown "${2:-${PYCM_PODMAN_DIR:-}}" ;;
    *)
        echo "usage: $0 setup|teardown [DIR]" >&2
        exit 2
        ;;
    esac
fi
