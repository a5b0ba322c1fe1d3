#!/bin/bash
# dhcp-all-interfaces: give a network interface a DHCP configuration in the format of
# the image's own network stack, unless it already has one.  Run at boot, once per
# interface (dhcp-interface@IFACE.service, the upstart job or the init script), or
# with no argument for every interface but lo.
#
#   dhcp-all-interfaces.sh [IFACE]
#
# Writes, by the first directory that exists:
#   /etc/network/                  ifupdown: /etc/network/interfaces.d/IFACE
#   /etc/sysconfig/network-scripts Red Hat:  ifcfg-IFACE
#   /etc/sysconfig/network         SUSE:     ifcfg-IFACE
# Only interfaces with a permanent MAC address (or a NAME.VLAN interface on one), and
# only once the link has carrier, within DIB_DHCP_TIMEOUT seconds.  With rdisc6, an
# IPv6 router advertisement picks SLAAC, stateless or stateful DHCPv6 as well.
#
# DHCP_ALL_INTERFACES_ROOT (default /) and DHCP_ALL_INTERFACES_SYSFS (default
# /sys/class/net) point the script elsewhere, for tests.
if [ "${DIB_DEBUG_TRACE:-0}" -gt 0 ]; then
    set -x
fi
set -eu
set -o pipefail

# the install hook replaces this with the build's DIB_DHCP_TIMEOUT
default_timeout=30
timeout=${DIB_DHCP_TIMEOUT:-$default_timeout}
[[ $timeout =~ ^[0-9]+$ ]] || timeout=$default_timeout
root=${DHCP_ALL_INTERFACES_ROOT:-}
root=${root%/}
sysfs=${DHCP_ALL_INTERFACES_SYSFS:-/sys/class/net}
PATH=$PATH:/usr/sbin:/sbin

if [ -d "$root/etc/network" ]; then
    style=ifupdown
    conf_dir=$root/etc/network/interfaces.d
elif [ -d "$root/etc/sysconfig/network-scripts" ]; then
    style=redhat
    conf_dir=$root/etc/sysconfig/network-scripts
elif [ -d "$root/etc/sysconfig/network" ]; then
    style=suse
    conf_dir=$root/etc/sysconfig/network
else
    echo "dhcp-all-interfaces: no /etc/network, /etc/sysconfig/network-scripts or" \
        "/etc/sysconfig/network: do not know how this system configures interfaces" >&2
    exit 1
fi

sys_attr() { # IFACE ATTR: the attribute, or empty when it cannot be read
    cat "$sysfs/$1/$2" 2>/dev/null || true
}

conf_file() {
    case $style in
        ifupdown) echo "$conf_dir/$1" ;;
        *) echo "$conf_dir/ifcfg-$1" ;;
    esac
}

already_configured() {
    [ -e "$(conf_file "$1")" ] && return 0
    if [ "$style" = ifupdown ] && command -v ifquery >/dev/null 2>&1 \
        && [ -f "$root/etc/network/interfaces" ]; then
        # a stanza anywhere ifupdown looks (interfaces, or a file it sources)
        [ -n "$(ifquery -i "$root/etc/network/interfaces" "$1" 2>/dev/null)" ] && return 0
    fi
    return 1
}

# a NAME.VLAN interface copies its MAC from NAME (addr_assign_type 2, "stolen")
is_vlan_on_real_nic() {
    local lower=${1%%.*}
    [ "$lower" != "$1" ] && [ "$(sys_attr "$1" addr_assign_type)" = 2 ] \
        && [ "$(sys_attr "$lower" addr_assign_type)" = 0 ]
}

wait_for_carrier() {
    local left
    for ((left = timeout; left > 0; left--)); do
        # set it up each time round: some drivers drop a link that stays down too long
        ip link set dev "$1" up >/dev/null 2>&1 || true
        [ "$(sys_attr "$1" carrier)" = 1 ] && return 0
        sleep 1
    done
    [ "$(sys_attr "$1" carrier)" = 1 ]
}

# prints "none", "slaac", "stateless" or "stateful"
ipv6_mode() {
    local ra rc left
    if ! command -v rdisc6 >/dev/null 2>&1; then
        echo none
        return
    fi
    for ((left = timeout; left > 0; left--)); do
        rc=0
        ra=$(rdisc6 --retry 3 --single "$1" 2>/dev/null) || rc=$?
        case $rc in
            0) break ;;
            2) echo none; return ;; # no router answered
            *) sleep 1 ;;           # e.g. no link-local address yet
        esac
    done
    if [ "$rc" != 0 ]; then
        echo none
    elif grep -Eq '^ *Stateful address conf\.[^:]*: *Yes' <<<"$ra"; then
        echo stateful
    elif grep -Eq '^ *Stateful other conf\.[^:]*: *Yes' <<<"$ra"; then
        echo stateless
    else
        echo slaac
    fi
}

# a stable DHCPv6 DUID (DUID-UUID, RFC 6355) from the machine id, for dhclient
write_duid() {
    local iface=$1 dir=$2 id duid='\x00\x04' i
    id=$(cat "$root/etc/machine-id" 2>/dev/null || true)
    [[ $id =~ ^[0-9a-f]{32}$ ]] || return 0
    for ((i = 0; i < 32; i += 2)); do
        duid+="\\x${id:i:2}"
    done
    mkdir -p "$dir"
    echo "default-duid \"$duid\";" >"$dir/dhclient6--$iface.lease"
}

ifupdown_config() {
    local iface=$1 v6=$2
    echo "# $iface: DHCP, written by dhcp-all-interfaces"
    echo "auto $iface"
    echo "iface $iface inet dhcp"
    case $v6 in
        stateful) echo "iface $iface inet6 dhcp" ;;
        stateless) printf 'iface %s inet6 auto\n    dhcp 1\n' "$iface" ;;
        slaac) printf 'iface %s inet6 auto\n    dhcp 0\n' "$iface" ;;
    esac
}

redhat_config() {
    local iface=$1 v6=$2
    echo "# $iface: DHCP, written by dhcp-all-interfaces"
    echo "DEVICE=\"$iface\""
    echo 'BOOTPROTO="dhcp"'
    echo 'ONBOOT="yes"'
    if [ "$(sys_attr "$iface" type)" = 32 ]; then
        # InfiniBand (ARPHRD_INFINIBAND); IPoIB in datagram mode, IPv4 only
        echo 'TYPE="InfiniBand"'
        echo 'CONNECTED_MODE="no"'
        echo 'DEFROUTE="yes"'
        echo 'PEERDNS="yes"'
        echo 'PEERROUTES="yes"'
        echo 'IPV4_FAILURE_FATAL="yes"'
        echo 'IPV6INIT="no"'
        return
    fi
    if is_vlan_on_real_nic "$iface"; then
        echo 'VLAN="yes"'
    else
        echo 'TYPE="Ethernet"'
    fi
    [ "$v6" = none ] && return
    echo 'IPV6INIT="yes"'
    case $v6 in
        stateful) echo 'IPV6_FORCE_ACCEPT_RA="yes"' && echo 'DHCPV6C="yes"' ;;
        stateless) echo 'IPV6_AUTOCONF="yes"' && echo 'DHCPV6C="yes"' && echo 'DHCPV6C_OPTIONS="-S"' ;;
        slaac) echo 'IPV6_AUTOCONF="yes"' ;;
    esac
}

suse_config() {
    echo "# $1: DHCP, written by dhcp-all-interfaces"
    echo 'BOOTPROTO="dhcp"'
    echo 'STARTMODE="auto"'
}

configure() {
    local iface=$1 v6=none file tmp
    if [ "$style" != suse ] && [ "$(sys_attr "$iface" type)" != 32 ]; then
        v6=$(ipv6_mode "$iface")
    fi
    mkdir -p "$conf_dir"
    # udev starts one service per interface at once: one writer at a time
    exec 9<"$conf_dir"
    flock -x 9
    if already_configured "$iface"; then
        exec 9<&-
        echo "dhcp-all-interfaces: $iface: configured meanwhile, left alone"
        return
    fi
    file=$(conf_file "$iface")
    tmp=$file.dhcp-all-interfaces.tmp
    "${style}_config" "$iface" "$v6" >"$tmp"
    mv "$tmp" "$file"
    case $style in
        ifupdown) [ "$v6" = none ] || write_duid "$iface" "$root/var/lib/dhcp" ;;
        redhat) [ "$v6" = none ] || write_duid "$iface" "$root/var/lib/dhclient" ;;
    esac
    exec 9<&-
    echo "dhcp-all-interfaces: $iface: DHCP configured in ${file#"$root"} (IPv6: $v6)"
}

inspect() {
    local iface=$1
    if [ ! -e "$sysfs/$iface" ]; then
        echo "dhcp-all-interfaces: $iface: no such interface" >&2
        return 1
    fi
    if already_configured "$iface"; then
        echo "dhcp-all-interfaces: $iface: already configured, left alone"
    elif [ "$(sys_attr "$iface" addr_assign_type)" != 0 ] && ! is_vlan_on_real_nic "$iface"; then
        echo "dhcp-all-interfaces: $iface: its MAC address is not permanent" \
            "(a virtual device), left alone"
    elif ! wait_for_carrier "$iface"; then
        echo "dhcp-all-interfaces: $iface: no link after $timeout s, left alone"
    else
        configure "$iface"
    fi
}

if [ $# -gt 0 ] && [ -n "$1" ]; then
    inspect "$1"
else
    for path in "$sysfs"/*; do
        name=${path##*/}
        [ "$name" = lo ] || [ ! -e "$path" ] || inspect "$name"
    done
fi
