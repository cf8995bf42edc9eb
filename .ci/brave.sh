#!/usr/bin/env bash
# Brave (Java, the reference Zipkin tracer) as the other side of our Kafka records and HTTP calls:
# builds peers/brave (io.zipkin.brave:brave with its kafka-clients and http instrumentation,
# org.apache.kafka:kafka-clients matching the broker), starts Apache Kafka
# (.ci/apache-kafka.sh start, stopped on exit) and runs
#   tdist-kafka/tests/brave_peer.rs  Brave consumes our traced records / we consume Brave's
#   tdist-http/tests/brave_peer.rs   a Brave client calls examples/http_service / it calls a Brave server
#
#   bash .ci/brave.sh [test]   build (cached), start Kafka, run both suites, stop Kafka (default)
#   bash .ci/brave.sh build    build only; prints `export TDIST_BRAVE_CLASSPATH=...`
#
# Needs java (17+), mvn, python3, curl, cargo. The peer jar and its dependencies are cached in
# $HOME/.cache/tdist/brave/<hash of peers/brave>/libs (rebuilt when the sources change; the build
# runs `mvn -o` first and goes online only when the local Maven repository lacks something). The
# broker's state is in $HOME/.cache/tdist/run/brave (TDIST_PEER_RUN_DIR overrides).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Our own broker state, apart from other scripts' `apache-kafka.sh start`.
export TDIST_PEER_RUN_DIR="${TDIST_PEER_RUN_DIR:-${HOME}/.cache/tdist/run/brave}"
# shellcheck source=lib/peers.sh
. "${ROOT}/.ci/lib/peers.sh"

SRC="${ROOT}/peers/brave"
HASH="$(cd "${SRC}" && find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)"
BRAVE_HOME="${TDIST_CACHE}/brave/${HASH}"
LIBS="${BRAVE_HOME}/libs"
export TDIST_BRAVE_CLASSPATH="${LIBS}/*"

mvn_peer() {
    # Offline first (quiet, fast when ~/.m2 has everything), then online.
    (
        cd "${SRC}"
        export MAVEN_OPTS="-Xmx512m"
        nice -n 19 mvn -o -q -B --color never -Dbrave.build.dir="${BRAVE_HOME}/build" "$@" 2>/dev/null ||
            nice -n 19 mvn -q -B --color never -Dbrave.build.dir="${BRAVE_HOME}/build" "$@"
    )
}

build() {
    step "build peers/brave (cached in ${BRAVE_HOME})"
    if [ -f "${LIBS}/.complete" ]; then
        echo "cached: $(ls "${LIBS}" | wc -l) jars"
        return 0
    fi
    rm -rf "${BRAVE_HOME}"
    mkdir -p "${LIBS}"
    mvn_peer dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="${LIBS}"
    mvn_peer package
    cp "${BRAVE_HOME}/build/brave-peer-0.jar" "${LIBS}/"
    rm -rf "${BRAVE_HOME}/build"
    touch "${LIBS}/.complete"
    # Builds of older sources are of no further use.
    find "${TDIST_CACHE}/brave" -mindepth 1 -maxdepth 1 -type d ! -name "${HASH}" -exec rm -rf {} +
    echo "built: $(ls "${LIBS}" | wc -l) jars"
}

KAFKA_STARTED=0
cleanup() {
    local rc=$?
    if [ "${KAFKA_STARTED}" = 1 ]; then
        bash "${ROOT}/.ci/apache-kafka.sh" stop >/dev/null 2>&1 || true
    fi
    exit "${rc}"
}

run_tests() {
    trap cleanup EXIT INT TERM
    step "start Apache Kafka (.ci/apache-kafka.sh start)"
    local exports
    exports="$(bash "${ROOT}/.ci/apache-kafka.sh" start | grep '^export TDIST_KAFKA_BOOTSTRAP_SERVERS=')"
    KAFKA_STARTED=1
    eval "${exports}"
    echo "broker: ${TDIST_KAFKA_BOOTSTRAP_SERVERS}"

    step "smoke: the Brave peer runs"
    # Without arguments it prints its usage (exit 2): proof the classpath holds the peer.
    local usage
    usage="$(java -Xmx512m -cp "${TDIST_BRAVE_CLASSPATH}" tdist.peer.BravePeer 2>&1 || true)"
    echo "${usage}"
    case "${usage}" in *"usage: BravePeer"*) ;; *) echo "the Brave peer did not start" >&2; return 1 ;; esac

    step "build the tests and examples/http_service"
    (cd "${ROOT}" && nice -n 19 cargo build -q -p tdist-examples --example http_service &&
        nice -n 19 cargo test -q -p tdist-kafka --test brave_peer --no-run &&
        nice -n 19 cargo test -q -p tdist-http --test brave_peer --no-run)

    step "tdist-kafka: Brave peer over Apache Kafka"
    (cd "${ROOT}" && TDIST_PEERS_REQUIRED=1 cargo test -q -p tdist-kafka --test brave_peer -- --ignored --test-threads 1)

    step "tdist-http: Brave peer over HTTP"
    (cd "${ROOT}" && TDIST_PEERS_REQUIRED=1 cargo test -q -p tdist-http --test brave_peer -- --ignored --test-threads 1)
    step_done
}

case "${1:-test}" in
    build)
        build
        step_done
        echo "export TDIST_BRAVE_CLASSPATH='${TDIST_BRAVE_CLASSPATH}'"
        ;;
    test)
        build
        run_tests
        ;;
    *)
        echo "usage: $0 [test|build]" >&2
        exit 2
        ;;
esac
