# Shared by the benchmark scripts (sourced, not run): messages, installing Mosquitto, waiting
# for a broker to listen, and the Mosquitto configuration every comparison uses.

say() { printf '%s\n' "$*" >&2; }

# Installs Debian's mosquitto if it is missing.
install_mosquitto() {
    command -v mosquitto >/dev/null 2>&1 && return 0
    say "installing Debian's mosquitto"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
}

# Waits up to 5 s for something to listen on 127.0.0.1:PORT.
wait_port() {
    local port=$1
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    say "nothing listens on 127.0.0.1:$port"
    return 1
}

# Writes FILE: Mosquitto on 127.0.0.1:PORT, anonymous, no persistence, errors only on
# standard error, no connection log lines (as hydrant runs with connection_messages = false).
write_mosquitto_conf() {
    cat >"$1" <<CONF
listener $2 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
connection_messages false
CONF
}
