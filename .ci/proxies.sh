#!/usr/bin/env bash
# The Zipkin transport to an https:// collector through real egress proxies (.ci/lib/proxies.sh):
# a CONNECT tunnel through tinyproxy with basic auth, the 403 a tinyproxy that tunnels only to
# port 443 answers (reported with its status, not retried), and a tunnel through microsocks
# (SOCKS5), whose refusals (a wrong password, a closed port) keep their reason. Runs the ignored
# test in tdist-http/tests/zipkin_tls.rs (feature tls) against them.
#
# Needs cargo, python3, and apt-get (for tinyproxy and microsocks when missing). Run state in
# $HOME/.cache/tdist/run/proxies (TDIST_PEER_RUN_DIR overrides the run directory).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/peers.sh
. "${ROOT}/.ci/lib/peers.sh"
# shellcheck source=lib/proxies.sh
. "${ROOT}/.ci/lib/proxies.sh"

STATE="${TDIST_RUN}/proxies"
trap 'stop_proxies "${STATE}"' EXIT

step "start tinyproxy (open and strict, basic auth) and microsocks on 127.0.0.1"
start_proxies "${STATE}"

step "cargo test -p tdist-http --features tls --test zipkin_tls -- --ignored"
cd "${ROOT}"
TDIST_HTTP_PROXY="${HTTP_PROXY_URL}" TDIST_STRICT_PROXY="${STRICT_PROXY_URL}" \
    TDIST_SOCKS_PROXY="${SOCKS_PROXY_URL}" \
    cargo test -p tdist-http --features tls --test zipkin_tls -- --ignored --nocapture
grep -E 'CONNECT|Access violation|Request' "${STATE}/tinyproxy.log" "${STATE}/tinyproxy-strict.log" | tail -n 8
step_done
