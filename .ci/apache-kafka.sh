#!/usr/bin/env bash
# Apache Kafka (KRaft, one node, 127.0.0.1 only) from Maven Central as a peer for tdist-kafka and the
# comment pipeline.
#
#   bash .ci/apache-kafka.sh [test]   resolve, start a fresh broker, run the suites, stop it (default)
#   bash .ci/apache-kafka.sh start    resolve and start a broker in the background; prints
#                                     `export TDIST_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:P`
#   bash .ci/apache-kafka.sh stop     stop the broker started by `start`
#
# Needs java (17+), mvn, python3, curl. The broker jars (org.apache.kafka:kafka_2.13 and its runtime
# dependencies, see .ci/maven/kafka/pom.xml) are cached in $HOME/.cache/tdist/kafka-<version>/libs.
# `start` keeps its state (pid, ports, log dir, log) in $HOME/.cache/tdist/run/apache-kafka
# (TDIST_PEER_RUN_DIR overrides the run directory). KAFKA_VERSION overrides the version.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/peers.sh
. "${ROOT}/.ci/lib/peers.sh"

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_HOME="${TDIST_CACHE}/kafka-${KAFKA_VERSION}"
LIBS="${KAFKA_HOME}/libs"
STATE="${TDIST_RUN}/apache-kafka"

resolve() {
    step "resolve org.apache.kafka:kafka_2.13:${KAFKA_VERSION} (cached in ${LIBS})"
    if [ -f "${LIBS}/.complete" ]; then
        echo "cached: $(ls "${LIBS}" | wc -l) jars"
        return 0
    fi
    rm -rf "${LIBS}"
    mkdir -p "${LIBS}"
    (
        cd "${ROOT}/.ci/maven/kafka"
        MAVEN_OPTS="-Xmx512m" nice -n 19 mvn -q -B --color never -Dkafka.version="${KAFKA_VERSION}" \
            dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="${LIBS}"
    )
    ls "${LIBS}"/kafka_2.13-"${KAFKA_VERSION}".jar >/dev/null
    touch "${LIBS}/.complete"
    echo "resolved: $(ls "${LIBS}" | wc -l) jars"
}

# Starts a broker with state in ${STATE}; sets BROKER_PID and BOOTSTRAP.
start_broker() {
    stop_broker quiet
    rm -rf "${STATE}"
    mkdir -p "${STATE}"
    local port ctrl
    port="$(free_port)"
    ctrl="$(free_port)"
    while [ "${ctrl}" = "${port}" ]; do ctrl="$(free_port)"; done
    cat >"${STATE}/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:${ctrl}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${ctrl}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${STATE}/data
num.partitions=1
num.network.threads=2
num.io.threads=2
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=1
PROPS
    local java=(java -Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
        -Dslf4j.internal.verbosity=WARN -Dorg.slf4j.simpleLogger.defaultLogLevel=info
        -cp "${LIBS}/*")

    step "format the KRaft log dir (kafka.tools.StorageTool --standalone)"
    local cluster
    cluster="$("${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    "${java[@]}" kafka.tools.StorageTool format -t "${cluster}" -c "${STATE}/server.properties" \
        --standalone >"${STATE}/format.log" 2>&1 || { cat "${STATE}/format.log"; return 1; }
    tail -n 2 "${STATE}/format.log"

    step "start the broker on 127.0.0.1:${port} (controller 127.0.0.1:${ctrl})"
    # setsid: the broker outlives `start`, and `stop` signals only this process.
    setsid "${java[@]}" kafka.Kafka "${STATE}/server.properties" >"${STATE}/broker.log" 2>&1 </dev/null &
    BROKER_PID=$!
    echo "${BROKER_PID}" >"${STATE}/pid"
    BOOTSTRAP="127.0.0.1:${port}"
    echo "${BOOTSTRAP}" >"${STATE}/bootstrap"

    step "probe the broker (port, then "Kafka Server started")"
    wait_port "${port}" 90 "${BROKER_PID}" "${STATE}/broker.log"
    # The listener opens before the broker has joined the metadata quorum: wait for the log line.
    local i
    for i in $(seq 1 600); do
        if grep -q -E 'Kafka Server started|\[KafkaRaftServer nodeId=1\] Kafka Server started' "${STATE}/broker.log"; then
            break
        fi
        kill -0 "${BROKER_PID}" 2>/dev/null || { tail -n 60 "${STATE}/broker.log"; return 1; }
        sleep 0.1
    done
    grep -q 'Kafka Server started' "${STATE}/broker.log" || {
        echo "broker did not report started within 60s"; tail -n 60 "${STATE}/broker.log"; return 1; }
    echo "broker pid ${BROKER_PID} ready at ${BOOTSTRAP}"
}

stop_broker() {
    local pid=""
    [ -f "${STATE}/pid" ] && pid="$(cat "${STATE}/pid")"
    if [ -n "${pid}" ] && kill -0 "${pid}" 2>/dev/null; then
        [ "${1:-}" = quiet ] || echo "stopping broker pid ${pid}"
        stop_pid "${pid}"
    fi
    rm -f "${STATE}/pid"
}

run_tests() {
    cd "${ROOT}"
    step "cargo test -p tdist-kafka --tests against Apache Kafka ${KAFKA_VERSION}"
    TDIST_KAFKA_BOOTSTRAP_SERVERS="${BOOTSTRAP}" cargo test -p tdist-kafka --tests -- --test-threads 2

    step "cargo test -p tdist-examples --test pipeline against Apache Kafka ${KAFKA_VERSION}"
    TDIST_KAFKA_BOOTSTRAP_SERVERS="${BOOTSTRAP}" cargo test -p tdist-examples --test pipeline

    # The Python peer test too, when .ci/kafka.sh has set up its venv.
    local py="${TDIST_CACHE}/py-kafka/bin/python"
    if [ -x "${py}" ] && "${py}" -c 'import confluent_kafka' 2>/dev/null; then
        step "python confluent-kafka peer against Apache Kafka ${KAFKA_VERSION}"
        TDIST_KAFKA_PYTHON="${py}" TDIST_KAFKA_BOOTSTRAP_SERVERS="${BOOTSTRAP}" \
            cargo test -p tdist-kafka --test python_peer -- --ignored
    else
        echo "(no ${py}: run .ci/kafka.sh first to also test the Python peer against Apache Kafka)"
    fi

    kill -0 "${BROKER_PID}" 2>/dev/null || { echo "broker died during the tests"; tail -n 60 "${STATE}/broker.log"; exit 1; }
}

case "${1:-test}" in
    start)
        resolve
        start_broker
        step_done
        echo "export TDIST_KAFKA_BOOTSTRAP_SERVERS=${BOOTSTRAP}"
        ;;
    stop)
        stop_broker
        ;;
    test)
        trap 'stop_broker' EXIT
        resolve
        start_broker
        run_tests
        step "stop the broker"
        stop_broker
        step_done
        ;;
    *)
        echo "usage: $0 [test|start|stop]" >&2
        exit 2
        ;;
esac
