#!/usr/bin/env bash
# Hosts on one switch, as Linux network namespaces: the multi-host tests' network,
# and a way to run Agora across "machines" by hand. Needs root and iproute2.
#
#   hosts.sh check            exit 0 where namespaces can be made here, else say why
#   hosts.sh up PREFIX N      make hosts PREFIX-0 .. PREFIX-(N-1), host i at
#                             10.77.0.(i+1)/24 on eth0, all on the bridge of PREFIX-sw;
#                             each host has its loopback up and no other route
#   hosts.sh down PREFIX      kill every process left in them, delete them
#   hosts.sh link PREFIX I up|down
#                             plug host I's cable into the switch, or pull it out
#   hosts.sh impair PREFIX I LOSS RATE
#                             host I's link drops LOSS % of the packets each way
#                             (nftables) and carries at most RATE each way (tc tbf,
#                             e.g. 256kbit), which queues and delays what is sent
#   hosts.sh impair PREFIX I off
#                             a clean link again
#   hosts.sh kill PREFIX I    kill -9 every process on host I (the machine dies)
#
# Nothing touches the root namespace: each veth pair is made inside the host's
# namespace with its peer in the switch's, so the hosts reach each other and nothing
# else. Run a program on a host with `ip netns exec PREFIX-I program ...`.
set -euo pipefail

SUBNET=10.77.0

usage() {
    sed -n '2,23p' "$0" >&2
    exit 2
}

check() {
    command -v ip >/dev/null || { echo "iproute2 is not installed (ip not found)" >&2; return 1; }
    local probe="agora-probe-$$"
    if ! out=$(ip netns add "$probe" 2>&1); then
        echo "cannot create a network namespace: $out" >&2
        return 1
    fi
    ip netns del "$probe"
}

up() {
    local p=$1 n=$2
    ip netns add "$p-sw"
    ip -n "$p-sw" link set lo up
    ip -n "$p-sw" link add br0 type bridge
    ip -n "$p-sw" link set br0 up
    for ((i = 0; i < n; i++)); do
        local ns="$p-$i"
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip -n "$ns" link add eth0 type veth peer name "h$i" netns "$p-sw"
        ip -n "$p-sw" link set "h$i" master br0
        ip -n "$p-sw" link set "h$i" up
        ip -n "$ns" addr add "$SUBNET.$((i + 1))/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
}

# SIGKILL to every process in network namespace $1.
kill_ns() {
    # shellcheck disable=SC2046
    kill -9 $(ip netns pids "$1") 2>/dev/null || true
}

down() {
    local p=$1 ns
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$p-(sw|[0-9]+)$" || true); do
        kill_ns "$ns"
        ip netns del "$ns"
    done
}

link() {
    local p=$1 i=$2 state=$3
    ip -n "$p-sw" link set "h$i" "$state"
}

# The kernel here has no netem qdisc, so loss is nftables' random drop and delay is
# what a slow link (tbf) makes of queued packets, plus TCP's retransmission timeouts.
impair() {
    local p=$1 i=$2 ns="$1-$2"
    ip netns exec "$ns" nft delete table inet impair 2>/dev/null || true
    tc -n "$ns" qdisc del dev eth0 root 2>/dev/null || true
    tc -n "$p-sw" qdisc del dev "h$i" root 2>/dev/null || true
    [[ $3 == off ]] && return 0
    local loss=$3 rate=$4
    ip netns exec "$ns" nft -f - <<EOF
table inet impair {
    chain in { type filter hook input priority 0; numgen random mod 100 < $loss drop; }
    chain out { type filter hook output priority 0; numgen random mod 100 < $loss drop; }
}
EOF
    # Out of the host, and into it (the switch's side of its cable).
    tc -n "$ns" qdisc add dev eth0 root tbf rate "$rate" burst 4kb latency 2s
    tc -n "$p-sw" qdisc add dev "h$i" root tbf rate "$rate" burst 4kb latency 2s
}


case "${1:-}" in
check) check ;;
up) (($# == 3)) || usage; up "$2" "$3" ;;
down) (($# == 2)) || usage; down "$2" ;;
link) (($# == 4)) || usage; link "$2" "$3" "$4" ;;
impair) (($# == 5)) || { (($# == 4)) && [[ $4 == off ]]; } || usage; impair "$2" "$3" "$4" "${5:-}" ;;
kill) (($# == 3)) || usage; kill_ns "$2-$3" ;;
*) usage ;;
esac
