# Shared by scripts/*: install what the project needs, only when missing.
# shellcheck shell=bash

# Debian packages by purpose; a purpose's packages are installed together.
declare -A CLUSTERKIT_PACKAGES=(
    [build]="gcc g++ libc6-dev valgrind binutils"
    [dns]="bind9 bind9-dnsutils"
    [vm]="qemu-system-x86 qemu-utils"
    [ocf]="resource-agents libxml2-utils"
    [bench]="strace valgrind linux-perf python3"
    [pacemaker]="pacemaker corosync pacemaker-cli-utils iproute2 util-linux"
    [metrics]="prometheus"
    [alerts]="pacemaker-common"
    # veth pairs and network namespaces in the ip-address/ocf tests and the demo.
    [network]="iproute2 util-linux procps"
    [shared-disk]="mount"
    [package]="dpkg-dev lintian binutils systemd"
)

# Maps a package to a command proving it is installed (empty: ask dpkg).
declare -A CLUSTERKIT_PROBE=(
    [gcc]="cc"
    [g++]="g++"
    [binutils]="nm"
    [bind9]="named"
    [bind9-dnsutils]="dig"
    [qemu-system-x86]="qemu-system-x86_64"
    [qemu-utils]="qemu-img"
    [libxml2-utils]="xmllint"
    [resource-agents]="ocf-tester"
    [strace]="strace"
    [valgrind]="valgrind"
    [linux-perf]="perf"
    [python3]="python3"
    [pacemaker]="pacemakerd"
    [corosync]="corosync"
    [pacemaker-cli-utils]="crm_mon"
    [prometheus]="promtool"
    [iproute2]="ip"
    [util-linux]="nsenter"
    [procps]="sysctl"
    [mount]="losetup"
    [dpkg-dev]="dpkg-shlibdeps"
    [lintian]="lintian"
    [systemd]="systemd-analyze"
)

_is_installed() {
    local pkg=$1 probe=${CLUSTERKIT_PROBE[$1]:-}
    if [[ -n $probe ]]; then
        command -v "$probe" >/dev/null 2>&1
    else
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"
    fi
}

# ensure_packages PURPOSE...: for each purpose with any package missing,
# apt-get installs ALL of that purpose's packages in one transaction. Naming
# only the missing ones lets apt satisfy them by removing an installed
# sibling it would have to upgrade (installing qemu-system-x86 removed an
# older qemu-utils); naming them all makes apt upgrade it instead.
ensure_packages() {
    local wanted=() purpose pkg
    for purpose in "$@"; do
        if [[ -z ${CLUSTERKIT_PACKAGES[$purpose]+set} ]]; then
            echo "error: unknown package purpose '$purpose'" >&2
            return 1
        fi
        for pkg in ${CLUSTERKIT_PACKAGES[$purpose]}; do
            if ! _is_installed "$pkg"; then
                # shellcheck disable=SC2206 # the lists are plain words
                wanted+=(${CLUSTERKIT_PACKAGES[$purpose]})
                break
            fi
        done
    done
    ((${#wanted[@]} == 0)) && return 0
    echo "installing packages (every package of each purpose with one missing): ${wanted[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${wanted[@]}"
}

# ensure_rust_tools: rustfmt, clippy and cargo-nextest.
ensure_rust_tools() {
    command -v cargo >/dev/null 2>&1 || {
        echo "error: cargo is not installed; install Rust (rustup) first" >&2
        exit 1
    }
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            rustup component add "$component"
        fi
    done
    if ! cargo nextest --version >/dev/null 2>&1; then
        cargo install cargo-nextest --locked
    fi
}
