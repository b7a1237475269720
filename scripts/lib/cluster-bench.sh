# `scripts/cluster bench`: the same three-member chain built from clusterkit
# agents (ocf:clusterkit:dummy) and from stock ones (ocf:heartbeat:Dummy),
# each with ordering and colocation constraints, in one cluster; a
# controlled move of each, and node failures that move both at once.
# Times run from the command (or the SIGKILL) to the moment the chain's last
# member's start is logged as done on the new node (pacemaker.log keeps
# milliseconds). Sourced by scripts/cluster.
# shellcheck shell=bash

BENCH_GROUPS=(ours stock)

# bench_primitive ID clusterkit|stock: a primitive whose start leaves a state file
# in the node's private /run.
bench_primitive() {
    local id=$1 agent=$2 class params
    if [[ $agent == clusterkit ]]; then
        class='provider="clusterkit" type="dummy"'
        params="<nvpair id=\"$id-p\" name=\"state_dir\" value=\"/run/resource-agents\"/>"
    else
        class='provider="heartbeat" type="Dummy"'
        params="<nvpair id=\"$id-p\" name=\"state\" value=\"/run/resource-agents/$id.state\"/>"
    fi
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

# Waits until the cluster has nothing left to do.
bench_settle() {
    local node
    for node in $(node_names); do
        [[ -n $(pids_named "$node" pacemakerd) ]] || continue
        in_node "$node" crm_resource --wait --timeout="${DEADLINE_S}s" >/dev/null
        return 0
    done
}

bench_any_node() {
    local node
    for node in $(node_names); do
        [[ -n $(pids_named "$node" pacemakerd) ]] && { echo "$node"; return 0; }
    done
    die "bench: no node runs pacemakerd"
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
    while (($#)); do
        case $1 in
        --rounds) rounds=$2; shift 2 ;;
        *) die "bench: unknown option $1" ;;
        esac
    done
    if [[ ! -f $DIR/cluster.env ]]; then
        cmd_up --library "$ROOT/target/debug/libclusterkit_dummy.so"
        own_cluster=1
        trap 'cmd_down >/dev/null' EXIT
    fi
    load
    ((NODES == 2)) || die "bench: needs a two-node cluster"
    [[ -x $DIR/resource.d/clusterkit/dummy ]] ||
        die "bench: the cluster has no ocf:clusterkit:dummy (up --library .../libclusterkit_dummy.so)"

    local node g m xml
    node=$(bench_any_node)
    # One update: the chains never start without their constraints.
    xml=$( {
        echo "<configuration><resources>"
        for m in a b c; do bench_primitive "ours-$m" clusterkit; done
        for m in a b c; do bench_primitive "stock-$m" stock; done
        echo "</resources><constraints>"
        for g in "${BENCH_GROUPS[@]}"; do bench_constraints "$g"; done
        echo "</constraints></configuration>"
    })
    in_node "$node" cibadmin --modify -o configuration --xml-text "$xml"
    bench_settle
    for g in "${BENCH_GROUPS[@]}"; do
        [[ $(located "$node" "$g-c") == node1 ]] || die "bench: $g-c did not start on node1"
    done

    local round from to t0 moves_ours=() moves_stock=() fails_ours=() fails_stock=() order
    for ((round = 1; round <= rounds; round++)); do
        # Controlled moves, one chain at a time, alternating which goes first.
        order=("${BENCH_GROUPS[@]}")
        ((round % 2)) || order=(stock ours)
        for g in "${order[@]}"; do
            node=$(bench_any_node)
            from=$(located "$node" "$g-c")
            to=$(bench_other "$from")
            t0=$(now_ms)
            in_node "$node" crm_resource --move -r "$g-a" -N "$to" >/dev/null 2>&1
            local done_at
            done_at=$(bench_started "$to" "$g-c" "$t0")
            in_node "$node" crm_resource --clear -r "$g-a" >/dev/null 2>&1
            bench_settle
            [[ $g == ours ]] && moves_ours+=($((done_at - t0))) || moves_stock+=($((done_at - t0)))
            echo "round $round: move of $g from $from to $to: $((done_at - t0)) ms" >&2
        done
        # Both chains on one node, then that node's corosync is killed.
        node=$(bench_any_node)
        from=$(located "$node" ours-c)
        if [[ $(located "$node" stock-c) != "$from" ]]; then
            in_node "$node" crm_resource --move -r stock-a -N "$from" >/dev/null 2>&1
            bench_started "$from" stock-c 0 >/dev/null
            in_node "$node" crm_resource --clear -r stock-a >/dev/null 2>&1
            bench_settle
        fi
        to=$(bench_other "$from")
        t0=$(now_ms)
        kill_corosync "$from"
        for g in "${BENCH_GROUPS[@]}"; do
            done_at=$(bench_started "$to" "$g-c" "$t0")
            [[ $g == ours ]] && fails_ours+=($((done_at - t0))) || fails_stock+=($((done_at - t0)))
            echo "round $round: failover of $g from $from to $to: $((done_at - t0)) ms" >&2
        done
        # The failed node comes back as after a reboot (a fresh /run): its
        # probes must find nothing running, and nothing must move back.
        cmd_crash "$from"
        boot_node "$from"
        wait_online
        bench_settle
        bench_no_failures
        for g in "${BENCH_GROUPS[@]}"; do
            [[ $(located "$to" "$g-c") == "$to" ]] || die "bench: $g moved back after $from rejoined"
        done
    done

    local mo ms fo fs
    mo=$(printf '%s\n' "${moves_ours[@]}" | median)
    ms=$(printf '%s\n' "${moves_stock[@]}" | median)
    fo=$(printf '%s\n' "${fails_ours[@]}" | median)
    fs=$(printf '%s\n' "${fails_stock[@]}" | median)
    echo "corosync token ${TOKEN_MS} ms, consensus ${CONSENSUS_MS} ms; $rounds rounds; medians in ms"
    echo "| step | ocf:clusterkit:dummy ×3 | ocf:heartbeat:Dummy ×3 | difference |"
    echo "|---|---|---|---|"
    echo "| controlled move (crm_resource --move) | $mo | $ms | $((mo - ms)) |"
    echo "| node failure (SIGKILL of corosync) | $fo | $fs | $((fo - fs)) |"
    echo "all rounds (ours / stock): moves ${moves_ours[*]} / ${moves_stock[*]}; failovers ${fails_ours[*]} / ${fails_stock[*]}"
    ((own_cluster)) || return 0
}
