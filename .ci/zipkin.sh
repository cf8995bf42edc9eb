#!/usr/bin/env bash
# The Zipkin server (io.zipkin:zipkin-server, classifier exec) from Maven Central as a peer: starts
# an Apache Kafka broker (.ci/apache-kafka.sh start), then Zipkin with in-memory storage on a free
# 127.0.0.1 port and its Kafka collector reading the broker's `zipkin` topic, and runs
# examples/tests/zipkin_server.rs: the comment pipeline's traces sent over HTTP and over Kafka must
# arrive whole in Zipkin, and its dependency graph must link the services. Debian's tinyproxy (an
# HTTP proxy with basic auth) and microsocks (a SOCKS5 proxy with a password), installed with
# apt-get when missing, stand between the Zipkin transport and the server for one more test:
# spans sent through each proxy.
#
#   bash .ci/zipkin.sh [test]   start Kafka and Zipkin, run the test, stop both (default)
#   bash .ci/zipkin.sh start    start both in the background; prints the variables the test reads
#                               (TDIST_ZIPKIN_URL, TDIST_KAFKA_BOOTSTRAP_SERVERS, TDIST_HTTP_PROXY,
#                               TDIST_SOCKS_PROXY)
#   bash .ci/zipkin.sh stop     stop both
#
# Needs java (17+), mvn, python3, curl, tinyproxy, microsocks. The jar is cached in $HOME/.cache/tdist/zipkin; run state
# in $HOME/.cache/tdist/run/zipkin (TDIST_PEER_RUN_DIR overrides). ZIPKIN_VERSION overrides 3.6.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/peers.sh
. "${ROOT}/.ci/lib/peers.sh"
# shellcheck source=lib/proxies.sh
. "${ROOT}/.ci/lib/proxies.sh"

ZIPKIN_VERSION="${ZIPKIN_VERSION:-3.6.1}"
ZIPKIN_DIR="${TDIST_CACHE}/zipkin"
JAR="${ZIPKIN_DIR}/zipkin-server-${ZIPKIN_VERSION}-exec.jar"
STATE="${TDIST_RUN}/zipkin"

resolve() {
    step "resolve io.zipkin:zipkin-server:${ZIPKIN_VERSION}:exec (cached in ${ZIPKIN_DIR})"
    if [ -f "${JAR}" ] && unzip -tq "${JAR}" >/dev/null 2>&1; then
        echo "cached: ${JAR}"
        return 0
    fi
    rm -f "${JAR}"
    mkdir -p "${ZIPKIN_DIR}"
    (
        cd "${ROOT}/.ci/maven/zipkin"
        MAVEN_OPTS="-Xmx512m" nice -n 19 mvn -q -B --color never -Dzipkin.version="${ZIPKIN_VERSION}" \
            dependency:copy -DoutputDirectory="${ZIPKIN_DIR}"
    )
    ls -l "${JAR}"
}

start_kafka() {
    step "Apache Kafka broker (.ci/apache-kafka.sh start)"
    bash "${ROOT}/.ci/apache-kafka.sh" start
    BOOTSTRAP="$(cat "${TDIST_RUN}/apache-kafka/bootstrap")"
}

start_zipkin() {
    stop_zipkin quiet
    rm -rf "${STATE}"
    mkdir -p "${STATE}"
    local port
    port="$(free_port)"
    step "start Zipkin ${ZIPKIN_VERSION} on 127.0.0.1:${port} (Kafka collector on ${BOOTSTRAP}, topic zipkin)"
    # QUERY_PORT alone binds every interface: the armeria.ports entry binds 127.0.0.1 only.
    STORAGE_TYPE=mem QUERY_PORT="${port}" KAFKA_BOOTSTRAP_SERVERS="${BOOTSTRAP}" KAFKA_TOPIC=zipkin \
        setsid java -Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -jar "${JAR}" \
        '--armeria.ports[0].ip=127.0.0.1' "--armeria.ports[0].port=${port}" \
        '--armeria.ports[0].protocols[0]=http' >"${STATE}/zipkin.log" 2>&1 </dev/null &
    ZIPKIN_PID=$!
    echo "${ZIPKIN_PID}" >"${STATE}/pid"
    ZIPKIN_URL="http://127.0.0.1:${port}"
    echo "${ZIPKIN_URL}" >"${STATE}/url"

    step "probe ${ZIPKIN_URL}/health"
    wait_http "${ZIPKIN_URL}/health" 120 "${ZIPKIN_PID}" "${STATE}/zipkin.log"
    local health
    health="$(curl -fsS "${ZIPKIN_URL}/health")"
    echo "${health}" | tr -d ' \n'; echo
    # The Kafka collector must be part of it (it is only when KAFKA_BOOTSTRAP_SERVERS took effect).
    echo "${health}" | grep -q 'KafkaCollector' || { echo "no Kafka collector in /health"; return 1; }
    echo "zipkin pid ${ZIPKIN_PID} ready at ${ZIPKIN_URL}"
}

start_proxy() {
    step "start tinyproxy (basic auth) and microsocks (SOCKS5, password) on 127.0.0.1"
    start_proxies "${STATE}/proxies"
}

stop_proxy() {
    stop_proxies "${STATE}/proxies" "$@"
}

stop_zipkin() {
    local pid=""
    [ -f "${STATE}/pid" ] && pid="$(cat "${STATE}/pid")"
    if [ -n "${pid}" ] && kill -0 "${pid}" 2>/dev/null; then
        [ "${1:-}" = quiet ] || echo "stopping zipkin pid ${pid}"
        stop_pid "${pid}"
    fi
    rm -f "${STATE}/pid"
}

stop_all() {
    stop_proxy
    stop_zipkin
    bash "${ROOT}/.ci/apache-kafka.sh" stop
}

case "${1:-test}" in
    start)
        resolve
        start_kafka
        start_zipkin
        start_proxy
        step_done
        echo "export TDIST_KAFKA_BOOTSTRAP_SERVERS=${BOOTSTRAP} TDIST_ZIPKIN_URL=${ZIPKIN_URL} TDIST_HTTP_PROXY=${HTTP_PROXY_URL} TDIST_SOCKS_PROXY=${SOCKS_PROXY_URL}"
        ;;
    stop)
        stop_all
        ;;
    test)
        trap stop_all EXIT
        resolve
        start_kafka
        start_zipkin
        start_proxy
        step "cargo test -p tdist-examples --test zipkin_server (spans over HTTP, over Kafka, through HTTP and SOCKS5 proxies)"
        cd "${ROOT}"
        TDIST_ZIPKIN_URL="${ZIPKIN_URL}" TDIST_KAFKA_BOOTSTRAP_SERVERS="${BOOTSTRAP}" TDIST_HTTP_PROXY="${HTTP_PROXY_URL}" TDIST_SOCKS_PROXY="${SOCKS_PROXY_URL}" \
            cargo test -p tdist-examples --test zipkin_server -- --ignored --test-threads 1 --nocapture
        kill -0 "${ZIPKIN_PID}" 2>/dev/null || { echo "zipkin died during the test"; tail -n 60 "${STATE}/zipkin.log"; exit 1; }
        step "stop Zipkin and Kafka"
        stop_all
        step_done
        ;;
    *)
        echo "usage: $0 [test|start|stop]" >&2
        exit 2
        ;;
esac
