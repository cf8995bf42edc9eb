# Egress proxies on 127.0.0.1 for the Zipkin transport's peer tests (sourced after peers.sh, not
# run): Debian's tinyproxy (HTTP, basic auth), a second tinyproxy that tunnels only to port 443
# (the policy squid ships with), and microsocks (SOCKS5, user and password). apt-get installs them
# when missing.
#
# start_proxies DIR: starts the three, state and logs in DIR; sets HTTP_PROXY_URL,
#   STRICT_PROXY_URL and SOCKS_PROXY_URL (credentials included).
# stop_proxies DIR [quiet]: stops whatever start_proxies started in DIR.

_start_proxy_process() {
    local dir="$1" name="$2" port="$3"; shift 3
    setsid "$@" >"${dir}/${name}.log" 2>&1 </dev/null &
    local pid=$!
    echo "${pid}" >"${dir}/${name}.pid"
    wait_port "${port}" 20 "${pid}" "${dir}/${name}.log"
    echo "${name} pid ${pid} on 127.0.0.1:${port}"
}

_tinyproxy_conf() {
    local port="$1"; shift
    printf '%s\n' "Port ${port}" "Listen 127.0.0.1" "Allow 127.0.0.1" "Timeout 30" \
        "MaxClients 16" "BasicAuth tdist egress-pw" "LogLevel Info" "DisableViaHeader Yes" "$@"
}

start_proxies() {
    local dir="$1" port
    stop_proxies "${dir}" quiet
    mkdir -p "${dir}"
    if ! command -v tinyproxy >/dev/null || ! command -v microsocks >/dev/null; then
        local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
        ${sudo} apt-get update -qq
        DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq tinyproxy microsocks >/dev/null
    fi

    port="$(free_port)"
    _tinyproxy_conf "${port}" >"${dir}/tinyproxy.conf"
    _start_proxy_process "${dir}" tinyproxy "${port}" tinyproxy -d -c "${dir}/tinyproxy.conf"
    HTTP_PROXY_URL="http://tdist:egress-pw@127.0.0.1:${port}"

    port="$(free_port)"
    _tinyproxy_conf "${port}" "ConnectPort 443" >"${dir}/tinyproxy-strict.conf"
    _start_proxy_process "${dir}" tinyproxy-strict "${port}" \
        tinyproxy -d -c "${dir}/tinyproxy-strict.conf"
    STRICT_PROXY_URL="http://tdist:egress-pw@127.0.0.1:${port}"

    port="$(free_port)"
    _start_proxy_process "${dir}" microsocks "${port}" \
        microsocks -i 127.0.0.1 -p "${port}" -u tdist -P socks-pw
    SOCKS_PROXY_URL="socks5h://tdist:socks-pw@127.0.0.1:${port}"
}

stop_proxies() {
    local dir="$1" name pid
    for name in tinyproxy tinyproxy-strict microsocks; do
        pid=""
        [ -f "${dir}/${name}.pid" ] && pid="$(cat "${dir}/${name}.pid")"
        if [ -n "${pid}" ] && kill -0 "${pid}" 2>/dev/null; then
            [ "${2:-}" = quiet ] || echo "stopping ${name} pid ${pid}"
            stop_pid "${pid}"
        fi
        rm -f "${dir}/${name}.pid"
    done
}
