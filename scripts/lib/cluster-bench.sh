# `scripts/cluster bench`: three-member chains, each with ordering and
# colocation constraints, side by side in one cluster: clusterkit agents on
# real backends (`full`: a disk on a shared image file, a network name
# registered with a BIND in the switch namespace, a dummy), clusterkit
# dummies (`ours`), and stock agents (`stock`: ocf:heartbeat:Dummy); a
# controlled move of each, and a node failure under each.
# Times run from the command (or the SIGKILL) to the moment the chain's last
# member's start is logged as done on the new node (pacemaker.log keeps
# milliseconds). Sourced by scripts/cluster.
# shellcheck shell=bash

BENCH_GROUPS=(full ours stock)
BENCH_ZONE=example.test
BENCH_KEY=ck-bench-key

# BIND in the switch namespace on port 53 of the bridge's address, serving
# $BENCH_ZONE with updates signed by a fresh key; sets BENCH_SECRET.
bench_dns() {
    need named bind9
    need tsig-keygen bind9
    need dig bind9-dnsutils
    local d=$DIR/bind
    mkdir -p "$d"
    tsig-keygen -a hmac-sha256 "$BENCH_KEY" >"$d/key.conf"
    BENCH_SECRET=$(sed -n 's/.*secret "\(.*\)";/\1/p' "$d/key.conf")
    # shellcheck disable=SC2016 # $TTL is the zone file's, not the shell's
    printf '$TTL 60\n@ IN SOA ns.%s. admin.%s. 1 60 60 600 60\n@ IN NS ns.%s.\nns IN A %s.254\n' \
        "$BENCH_ZONE" "$BENCH_ZONE" "$BENCH_ZONE" "$SUBNET" >"$d/zone.db"
    rm -f "$d/zone.db.jnl"
    cat >"$d/named.conf" <<END
include "$d/key.conf";
controls { };
options {
  directory "$d";
  pid-file "$d/named.pid";
  session-keyfile "$d/session.key";
  listen-on port 53 { $SUBNET.254; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
};
zone "$BENCH_ZONE" {
  type primary;
  file "$d/zone.db";
  allow-update { key $BENCH_KEY; };
};
END
    setsid ip netns exec "$(netns_of switch)" named -g -c "$d/named.conf" -u root -n 1 \
        </dev/null >"$d/named.log" 2>&1 &
    disown
    local deadline=$((SECONDS + DEADLINE_S))
    until in_node node1 dig @"$SUBNET.254" "$BENCH_ZONE" SOA +short +time=1 +tries=1 2>/dev/null | grep -q .; do
        ((SECONDS < deadline)) || die "bench: named did not answer: $(tail -n 20 "$d/named.log")"
        sleep 0.2
    done
}

# The disk image both nodes see, formatted.
bench_disk() {
    truncate -s 8M "$DIR/shared.img"
    "$(cat "$DIR/clusterkit")" type-control "$ROOT/target/debug/libclusterkit_disk.so" disk \
        'type_specific(1)' path="$DIR/shared.img" >/dev/null
}

nvpair() { printf '<nvpair id="%s-%s" name="%s" value="%s"/>' "$1" "$2" "$2" "$3"; }

# bench_primitive ID AGENT: a primitive of ocf:clusterkit:AGENT, or of
# ocf:heartbeat:Dummy for AGENT "stock"; dummies keep their state in the
# node's private /run.
bench_primitive() {
    local id=$1 agent=$2 class params
    case $agent in
    stock)
        class='provider="heartbeat" type="Dummy"'
        params=$(nvpair "$id" state "/run/resource-agents/$id.state")
        ;;
    dummy)
        class='provider="clusterkit" type="dummy"'
        params=$(nvpair "$id" state_dir /run/resource-agents)
        ;;
    disk)
        class='provider="clusterkit" type="disk"'
        if ((${BENCH_DELEGATED:-0})); then
            # Each node its own owner (the default): the lease keeps them apart.
            params=$(nvpair "$id" path "$DIR/shared.img")$(nvpair "$id" io_timeout 2s)
            params+=$(nvpair "$id" lease_renewal 1s)$(nvpair "$id" lease_timeout 8s)
        else
            params=$(nvpair "$id" path "$DIR/shared.img")$(nvpair "$id" owner "$NAME/$id")$(nvpair "$id" io_timeout 10s)
        fi
        ;;
    network-name)
        class='provider="clusterkit" type="network-name"'
        params=$(nvpair "$id" name "www.$BENCH_ZONE")$(nvpair "$id" address "$SUBNET.100")
        params+=$(nvpair "$id" zone "$BENCH_ZONE")$(nvpair "$id" servers "$SUBNET.254:53")
        params+=$(nvpair "$id" tsig_key_name "$BENCH_KEY")$(nvpair "$id" tsig_secret "$BENCH_SECRET")
        params+=$(nvpair "$id" check_interface false)
        ;;
    esac
    cat <<EOF
<primitive id="$id" class="ocf" $class>
  <instance_attributes id="$id-ia">$params</instance_attributes>
  <operations><op id="$id-mon" name="monitor" interval="10s" timeout="20s"/></operations>
</primitive>
EOF
}

# The chain G-a → G-b → G-c: each starts after, and runs with, the one before.
bench_constraints() {
    local g=$1
    cat <<EOF
<rsc_order id="$g-order-ab" first="$g-a" then="$g-b"/>
<rsc_order id="$g-order-bc" first="$g-b" then="$g-c"/>
<rsc_colocation id="$g-col-ba" rsc="$g-b" with-rsc="$g-a" score="INFINITY"/>
<rsc_colocation id="$g-col-cb" rsc="$g-c" with-rsc="$g-b" score="INFINITY"/>
<rsc_location id="$g-prefers-node1" rsc="$g-a" node="node1" score="50"/>
EOF
}

# Milliseconds since the epoch of a pacemaker.log line's timestamp.
log_ms() {
    local stamp
    stamp=$(cut -c1-19 <<<"$1")
    echo $(($(date -d "$stamp" +%s%N) / 1000000))
}

# bench_started NODE RESOURCE SINCE_MS: waits until NODE logs RESOURCE's
# start as done after SINCE_MS; prints that time.
bench_started() {
    local node=$1 resource=$2 since=$3 line at deadline=$((SECONDS + DEADLINE_S))
    local log=$DIR/$node/var-log-pacemaker/pacemaker.log
    while :; do
        line=$(grep -F "Result of start operation for $resource on $node: ok" "$log" | tail -n1 || true)
        if [[ -n $line ]]; then
            at=$(log_ms "$line")
            ((at >= since)) && { echo "$at"; return 0; }
        fi
        ((SECONDS < deadline)) || die "bench: $resource did not start on $node within ${DEADLINE_S}s"
        sleep 0.05
    done
}

# bench_logged NODE TEXT SINCE_MS: the time of NODE's first log line
# holding TEXT at or after SINCE_MS (the line is there already).
bench_logged() {
    local line at
    while IFS= read -r line; do
        at=$(log_ms "$line")
        ((at >= $3)) && { echo "$at"; return 0; }
    done < <(grep -F "$2" "$DIR/$1/var-log-pacemaker/pacemaker.log")
    die "bench: no \"$2\" in $1's log since $3"
}

# Waits until the cluster has nothing left to do.
bench_settle() {
    in_node "$(bench_any_node)" crm_resource --wait --timeout="${DEADLINE_S}s" >/dev/null
}

bench_any_node() {
    live_node || die "bench: no node runs corosync and pacemakerd"
}

# The DC's name, as NODE sees it.
bench_dc() {
    in_node "$1" crm_mon -1 --output-as=xml |
        sed -n 's/.*<current_dc present="true".* name="\([^"]*\)".*/\1/p'
}

# bench_place NODE CHAIN TARGET: moves CHAIN to TARGET unless it is there.
bench_place() {
    local node=$1 g=$2 target=$3 t0
    [[ $(located "$node" "$g-c") == "$target" ]] && return 0
    t0=$(now_ms)
    in_node "$node" crm_resource --move -r "$g-a" -N "$target" >/dev/null 2>&1
    bench_started "$target" "$g-c" "$t0" >/dev/null
    in_node "$node" crm_resource --clear -r "$g-a" >/dev/null 2>&1
    bench_settle
}

bench_other() {
    [[ $1 == node1 ]] && echo node2 || echo node1
}

median() {
    sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2)}'
}

# Fails on any failed action or fail count: the figures hold only for a
# cluster that did nothing but what was asked.
bench_no_failures() {
    local node xml
    node=$(bench_any_node)
    xml=$(in_node "$node" crm_mon -1 --output-as=xml --include=all)
    if grep -q '<failure ' <<<"$xml" || grep -q 'fail-count="[1-9]' <<<"$xml"; then
        die "bench: Pacemaker recorded failures: $(grep -E '<failure |fail-count="[1-9]' <<<"$xml")"
    fi
}

cmd_bench() {
    local rounds=5 own_cluster=0
    BENCH_DELEGATED=0
    while (($#)); do
        case $1 in
        --rounds) rounds=$2; shift 2 ;;
        # The agents delegate to a `clusterkit run` on each node (the
        # production mode): the disk holds its on-disk lease, so a node
        # failure is a crash of the whole node (a power loss, or what a
        # fence does), and the survivor waits out the lease.
        --delegated) BENCH_DELEGATED=1; shift ;;
        *) die "bench: unknown option $1" ;;
        esac
    done
    local lib
    for lib in dummy disk network_name; do
        [[ -f $ROOT/target/debug/libclusterkit_$lib.so ]] ||
            die "bench: build the example libraries first: cargo build -p clusterkit-cli -p clusterkit-example-dummy -p clusterkit-example-disk -p clusterkit-example-network-name"
    done
    if [[ ! -f $DIR/cluster.env ]]; then
        local hosts=()
        if ((BENCH_DELEGATED)); then
            mkdir -p "$DIR/bench-hosts"
            for node in node1 node2; do
                printf 'state_dir = "/run/clusterkit"\ncontrol_socket = "/run/clusterkit/control.sock"\n' >"$DIR/bench-hosts/$node.toml"
            done
            hosts=(--hosts "$DIR/bench-hosts/%n.toml")
        fi
        cmd_up --library "$ROOT/target/debug/libclusterkit_dummy.so" \
            --library "$ROOT/target/debug/libclusterkit_disk.so" \
            --library "$ROOT/target/debug/libclusterkit_network_name.so" "${hosts[@]}"
        own_cluster=1
        trap 'cmd_down >/dev/null' EXIT
    fi
    load
    ((NODES == 2)) || die "bench: needs a two-node cluster"
    for lib in dummy disk network-name; do
        [[ -x $DIR/resource.d/clusterkit/$lib ]] ||
            die "bench: the cluster has no ocf:clusterkit:$lib (up --library .../libclusterkit_${lib/-/_}.so)"
    done
    bench_dns
    bench_disk

    local node g m xml
    node=$(bench_any_node)
    # One update: the chains never start without their constraints.
    xml=$( {
        echo "<configuration><resources>"
        bench_primitive full-a disk
        bench_primitive full-b network-name
        bench_primitive full-c dummy
        for m in a b c; do bench_primitive "ours-$m" dummy; done
        for m in a b c; do bench_primitive "stock-$m" stock; done
        echo "</resources><constraints>"
        for g in "${BENCH_GROUPS[@]}"; do bench_constraints "$g"; done
        echo "</constraints></configuration>"
    })
    in_node "$node" cibadmin --modify -o configuration --xml-text "$xml"
    local deadline=$((SECONDS + DEADLINE_S))
    for g in "${BENCH_GROUPS[@]}"; do
        until [[ $(located "$node" "$g-c") == node1 ]]; do
            ((SECONDS < deadline)) || die "bench: $g-c did not start on node1: $(in_node "$node" crm_mon -1rf)"
            sleep 0.2
        done
    done
    bench_settle
    bench_no_failures

    local round from to t0 done_at i
    local -A moves=() fails=() after_loss=() starts=()
    local lost_at first_start
    for ((round = 1; round <= rounds; round++)); do
        # Controlled moves, one chain at a time; which goes first rotates.
        for ((i = 0; i < ${#BENCH_GROUPS[@]}; i++)); do
            g=${BENCH_GROUPS[(i + round) % ${#BENCH_GROUPS[@]}]}
            node=$(bench_any_node)
            from=$(located "$node" "$g-c")
            to=$(bench_other "$from")
            t0=$(now_ms)
            in_node "$node" crm_resource --move -r "$g-a" -N "$to" >/dev/null 2>&1
            done_at=$(bench_started "$to" "$g-c" "$t0")
            in_node "$node" crm_resource --clear -r "$g-a" >/dev/null 2>&1
            bench_settle
            moves[$g]+=" $((done_at - t0))"
            echo "round $round: move of $g from $from to $to: $((done_at - t0)) ms" >&2
        done
        # Node failures, one chain at a time (chains started in one
        # transition would be measured in the order Pacemaker runs them):
        # the chain alone on the node that is not the DC (a DC's failure
        # adds an election, about a second, whichever the agents), the
        # others on the DC, then the chain's node's corosync is killed.
        for ((i = 0; i < ${#BENCH_GROUPS[@]}; i++)); do
            g=${BENCH_GROUPS[(i + round) % ${#BENCH_GROUPS[@]}]}
            node=$(bench_any_node)
            to=$(bench_dc "$node")
            from=$(bench_other "$to")
            local other target
            for other in "${BENCH_GROUPS[@]}"; do
                target=$to
                [[ $other == "$g" ]] && target=$from
                bench_place "$node" "$other" "$target"
            done
            t0=$(now_ms)
            if ((BENCH_DELEGATED)); then
                cmd_crash "$from"
            else
                kill_corosync "$from"
            fi
            done_at=$(bench_started "$to" "$g-c" "$t0")
            fails[$g]+=" $((done_at - t0))"
            # What follows the membership change, and the chain's own starts.
            lost_at=$(bench_logged "$to" "Cluster node $from is now lost" "$t0")
            first_start=$(bench_logged "$to" "Initiating start operation $g-a_start_0" "$t0")
            after_loss[$g]+=" $((done_at - lost_at))"
            starts[$g]+=" $((done_at - first_start))"
            echo "round $round: failover of $g from $from to $to: $((done_at - t0)) ms" >&2
            # The failed node comes back as after a reboot (a fresh /run):
            # its probes must find nothing running, and nothing moves back.
            cmd_crash "$from"
            boot_node "$from"
            wait_online
            bench_settle
            bench_no_failures
            for other in "${BENCH_GROUPS[@]}"; do
                [[ $(located "$to" "$other-c") == "$to" ]] || die "bench: $other is not on $to after $from rejoined"
            done
        done
    done

    local -A med=()
    local series
    for g in "${BENCH_GROUPS[@]}"; do
        for series in moves fails after_loss starts; do
            local -n values=$series
            # shellcheck disable=SC2086 # one figure a word
            med[$series.$g]=$(printf '%s\n' ${values[$g]} | median)
            unset -n values
        done
    done
    row() {
        local series=$1
        printf '| %s | %s (%+d) | %s (%+d) | %s |\n' "$2" \
            "${med[$series.full]}" $((med[$series.full] - med[$series.stock])) \
            "${med[$series.ours]}" $((med[$series.ours] - med[$series.stock])) "${med[$series.stock]}"
    }
    local mode="agents one process per operation; node failure: SIGKILL of its corosync"
    ((BENCH_DELEGATED)) && mode="agents delegating to a clusterkit run per node; node failure: every process of the node killed (disk lease_timeout 8 s)"
    echo "$mode; corosync token ${TOKEN_MS} ms, consensus ${CONSENSUS_MS} ms; $rounds rounds; medians in ms (clusterkit − stock)"
    echo
    echo "| step | clusterkit disk → network-name → dummy | clusterkit dummy ×3 | stock Dummy ×3 |"
    echo "|---|---|---|---|"
    # shellcheck disable=SC2016 # backquotes for Markdown
    row moves 'controlled move: `crm_resource --move` → last member started'
    row fails 'node failure → last member started'
    row after_loss '… of which: node loss seen by Pacemaker → last member started'
    row starts '… of which: first start initiated → last member started'
    echo
    for g in "${BENCH_GROUPS[@]}"; do
        echo "every round, $g: moves${moves[$g]}; failovers${fails[$g]}; after the loss${after_loss[$g]}; starts${starts[$g]}"
    done
    ((own_cluster)) || return 0
}
