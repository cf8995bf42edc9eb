#!/usr/bin/env bash
# tdist's Rust bolts under a real Apache Storm: a LocalCluster (in-process ZooKeeper) runs the Java
# topology in peers/storm/ (a reliable spout carrying a B3 trace context -> Rust split bolt -> Rust
# count bolt, both run by Storm's own ShellBolt), and tdist-storm/tests/storm_cluster.rs drives it
# and checks acks, ShellBolt deaths and the bolts' spans.
#
# Needs java (17+), mvn and cargo. Storm's jars (org.apache.storm:storm-server and storm-client,
# STORM_VERSION, default 2.8.3) and the topology jar are cached in $HOME/.cache/tdist/storm-cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/peers.sh
. "${ROOT}/.ci/lib/peers.sh"

STORM_VERSION="${STORM_VERSION:-2.8.3}"
HOME_DIR="${TDIST_CACHE}/storm-cluster"
LIBS="${HOME_DIR}/libs-${STORM_VERSION}"
BUILD="${HOME_DIR}/build-${STORM_VERSION}"
OUT="${TDIST_RUN}/storm-cluster"
MVN=(nice -n 19 mvn -q -B --color never -f "${ROOT}/peers/storm/pom.xml"
    -Dstorm.version="${STORM_VERSION}" -Dtdist.build.dir="${BUILD}")
export MAVEN_OPTS="${MAVEN_OPTS:--Xmx512m}"

command -v java >/dev/null || { echo "java is required" >&2; exit 1; }
command -v mvn >/dev/null || { echo "mvn is required" >&2; exit 1; }

# The test bounds the Java program itself; if this script is interrupted, stop that JVM by the
# process id it wrote (only if it still is our topology). Its Rust bolts exit when their stdin closes.
cleanup() {
    local pid
    pid="$(cat "${OUT}/topology.pid" 2>/dev/null || true)"
    if [ -n "${pid}" ] && [ -r "/proc/${pid}/cmdline" ] \
        && tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q 'tdist.storm.TopologyMain'; then
        echo "stopping the leftover topology JVM ${pid}" >&2
        kill "${pid}" 2>/dev/null || true
    fi
}
trap cleanup EXIT
rm -rf "${OUT}"

step "resolve org.apache.storm:storm-server:${STORM_VERSION} (cached in ${LIBS})"
if [ -f "${LIBS}/.complete" ]; then
    echo "cached: $(ls "${LIBS}" | wc -l) jars"
else
    rm -rf "${LIBS}"
    mkdir -p "${LIBS}"
    "${MVN[@]}" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="${LIBS}"
    ls "${LIBS}/storm-server-${STORM_VERSION}.jar" "${LIBS}/storm-client-${STORM_VERSION}.jar" >/dev/null
    touch "${LIBS}/.complete"
    echo "resolved: $(ls "${LIBS}" | wc -l) jars"
fi

step "build the topology jar (peers/storm)"
"${MVN[@]}" package
JAR="${BUILD}/storm-cluster-0.jar"
ls -l "${JAR}"

step "build the Rust bolt (cargo build -p tdist-examples --example storm_relay)"
cd "${ROOT}"
BOLT="$(cargo build -p tdist-examples --example storm_relay --message-format=json-render-diagnostics \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "storm_relay" and m.get("executable"):
        print(m["executable"])')"
[ -x "${BOLT}" ] || { echo "no storm_relay binary" >&2; exit 1; }
echo "${BOLT}"

step "cargo test -p tdist-storm --test storm_cluster (LocalCluster, files in ${OUT})"
mkdir -p "${OUT}"
TDIST_STORM_CLASSPATH="${JAR}:${LIBS}/*" \
TDIST_STORM_BOLT="${BOLT}" \
TDIST_STORM_OUT="${OUT}" \
    cargo test -p tdist-storm --test storm_cluster -- --nocapture
step "storm cluster test passed"
step_done
