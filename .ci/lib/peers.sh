# Shared helpers for the .ci/ peer scripts (sourced, not run).
# step NAME: prints a header with the time and the previous step's duration.
# free_port: a free TCP port on 127.0.0.1.  wait_port PORT SECONDS PID LOG: waits until 127.0.0.1:PORT
# accepts connections, failing early when PID has exited (LOG is printed on failure).
# wait_http URL SECONDS PID LOG: the same for an HTTP URL answering 2xx.

TDIST_CACHE="${HOME}/.cache/tdist"
TDIST_RUN="${TDIST_PEER_RUN_DIR:-${TDIST_CACHE}/run}"

_step_name=""
_step_t0=0
_script_t0=$(date +%s)
step() {
    local now; now=$(date +%s)
    if [ -n "${_step_name}" ]; then
        printf '<== %s: %ss\n' "${_step_name}" "$((now - _step_t0))"
    fi
    _step_name="$*"
    _step_t0=${now}
    printf '\n==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"
}
step_done() {
    local now; now=$(date +%s)
    if [ -n "${_step_name}" ]; then
        printf '<== %s: %ss\n' "${_step_name}" "$((now - _step_t0))"
    fi
    _step_name=""
    printf '(total %ss)\n' "$((now - _script_t0))"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() {
    local port="$1" secs="$2" pid="$3" log="$4" i
    for i in $(seq 1 $((secs * 10))); do
        if ! kill -0 "${pid}" 2>/dev/null; then
            echo "process ${pid} exited before 127.0.0.1:${port} opened; log ${log}:" >&2
            tail -n 60 "${log}" >&2 || true
            return 1
        fi
        if port_open "${port}"; then return 0; fi
        sleep 0.1
    done
    echo "127.0.0.1:${port} not open after ${secs}s; log ${log}:" >&2
    tail -n 60 "${log}" >&2 || true
    return 1
}

wait_http() {
    local url="$1" secs="$2" pid="$3" log="$4" i
    for i in $(seq 1 $((secs * 4))); do
        if ! kill -0 "${pid}" 2>/dev/null; then
            echo "process ${pid} exited before ${url} answered; log ${log}:" >&2
            tail -n 60 "${log}" >&2 || true
            return 1
        fi
        if curl -fsS --max-time 2 "${url}" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    echo "${url} not healthy after ${secs}s; log ${log}:" >&2
    tail -n 60 "${log}" >&2 || true
    return 1
}

# stop_pid PID: TERM, then KILL after 15 s; waits for the process to go.
stop_pid() {
    local pid="$1" i
    [ -n "${pid}" ] || return 0
    kill -0 "${pid}" 2>/dev/null || return 0
    kill "${pid}" 2>/dev/null || true
    for i in $(seq 1 150); do
        kill -0 "${pid}" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "${pid}" 2>/dev/null || true
}
