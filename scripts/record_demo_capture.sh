#!/usr/bin/env bash
# Record netsynth's bundled demo capture: real traffic between real client and
# server programs (Debian packages) across network namespaces on this machine.
#
#   sudo bash scripts/record_demo_capture.sh data/demo
#
# Topology (all inside namespaces made here, private 10.99.0.0/24 only):
#
#   nsdemo-cli [dc0 10.99.0.2] --veth-- [dc1] nsdemo-mid [ds1] --veth-- [ds0 10.99.0.1] nsdemo-srv
#                  ^ tcpdump               delay_bridge.py + tc tbf
#
# The clients (curl, dig, ssh/scp, redis-cli/redis-benchmark, psql/pgbench,
# mosquitto_pub/sub) run in nsdemo-cli, the servers (nginx, dnsmasq, sshd,
# redis-server, postgres, mosquitto) in nsdemo-srv.  nsdemo-mid has no IP
# addresses: scripts/delay_bridge.py copies Ethernet frames between its two
# interfaces with a per-session one-way delay plus per-frame jitter (the kernel
# here has no netem), and a tc tbf qdisc on each of its interfaces limits the
# rate.  tcpdump records the client-side interface with full snaplen, one pcap
# per (class, session) under OUT/captures/<class>/session-<k>.pcap, and
# OUT/labels.csv maps each capture to its class.
#
# Environment knobs: DEMO_SEED (default 20250601), DEMO_SESSIONS (default 8),
# DEMO_CLASSES (default "http https dns ssh redis postgresql mqtt").
# Idempotent: it records into OUT/captures.new and replaces OUT/captures and
# OUT/labels.csv only when every session has been recorded.  Needs root.
set -euo pipefail

OUT=${1:?usage: sudo bash scripts/record_demo_capture.sh OUTDIR}
SEED=${DEMO_SEED:-20250601}
SESSIONS=${DEMO_SESSIONS:-8}
read -r -a CLASSES <<<"${DEMO_CLASSES:-http https dns ssh redis postgresql mqtt}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
SRV_IP=10.99.0.1
CLI_IP=10.99.0.2
NS_CLI=nsdemo-cli
NS_MID=nsdemo-mid
NS_SRV=nsdemo-srv

if [ "$(id -u)" != 0 ]; then
    echo "record_demo_capture.sh: needs root (network namespaces, tcpdump, servers)" >&2
    exit 1
fi

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*"; }

# ----------------------------------------------------------------- packages
PKGS=(iproute2 ethtool tcpdump python3 procps openssl curl nginx-light dnsmasq-base
      bind9-dnsutils openssh-server openssh-client redis-server redis-tools
      postgresql postgresql-client mosquitto mosquitto-clients)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x "$PY" ] || PY=$(command -v python3)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

# ----------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/netsynth-demo-rec.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/log"

kill_ns() {  # stop every process that lives in one of our namespaces
    local ns=$1 pids
    ip netns list 2>/dev/null | grep -qw "$ns" || return 0
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
        kill -TERM $pids 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -z "$pids" ] && break
            sleep 0.3
        done
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
}

cleanup() {
    set +e
    for ns in "$NS_CLI" "$NS_MID" "$NS_SRV"; do kill_ns "$ns"; done
    rm -rf "$WORK" "$OUT/captures.new"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in "$NS_CLI" "$NS_MID" "$NS_SRV"; do kill_ns "$ns"; done   # leftovers of an aborted run

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ----------------------------------------------------------------- network
log "network namespaces"
for ns in "$NS_CLI" "$NS_MID" "$NS_SRV"; do
    ip netns add "$ns"
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip link add dc0 netns "$NS_CLI" type veth peer name dc1 netns "$NS_MID"
ip link add ds0 netns "$NS_SRV" type veth peer name ds1 netns "$NS_MID"
ip -n "$NS_CLI" addr add "$CLI_IP/24" dev dc0
ip -n "$NS_SRV" addr add "$SRV_IP/24" dev ds0
# No offloads: frames on the wire (and in the capture) are MTU-sized with real
# checksums, which the userspace bridge can forward as they are.
for pair in "$NS_CLI dc0" "$NS_MID dc1" "$NS_MID ds1" "$NS_SRV ds0"; do
    set -- $pair
    nsx "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
    ip -n "$1" link set "$2" up
done
ip -n "$NS_MID" link set dc1 promisc on
ip -n "$NS_MID" link set ds1 promisc on

# ----------------------------------------------------------------- content
log "content and keys"
"$PY" "$HERE/demo_traffic.py" setup "$WORK" --seed "$SEED"
chmod -R a+rX "$WORK/www" "$WORK/dns"

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=demo.netsynth.test" \
    -addext "subjectAltName=IP:$SRV_IP,DNS:demo.netsynth.test" \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1

S=$WORK/ssh
ssh-keygen -q -N '' -t ed25519 -f "$S/host_ed25519"
ssh-keygen -q -N '' -t ed25519 -f "$S/id_ed25519"
ssh-keygen -q -N '' -t ecdsa -b 256 -f "$S/id_ecdsa"
ssh-keygen -q -N '' -t rsa -b 2048 -f "$S/id_rsa"
cat "$S"/id_*.pub >"$S/authorized_keys"

# ----------------------------------------------------------------- servers
log "servers"
mkdir -p "$WORK/nginx-tmp"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/log/nginx-error.log warn;
events { worker_connections 256; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    keepalive_timeout 15;
    gzip on;
    gzip_min_length 256;
    gzip_types text/plain text/css application/json;
    client_body_temp_path $WORK/nginx-tmp/body;
    proxy_temp_path $WORK/nginx-tmp/proxy;
    fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
    scgi_temp_path $WORK/nginx-tmp/scgi;
    server {
        listen $SRV_IP:80;
        listen $SRV_IP:443 ssl http2;
        ssl_certificate $WORK/tls.crt;
        ssl_certificate_key $WORK/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $WORK/www;
        location = /api/upload { client_max_body_size 1m; return 204; }
    }
}
EOF
nsx "$NS_SRV" nginx -c "$WORK/nginx.conf" >"$WORK/log/nginx.out" 2>&1 &

nsx "$NS_SRV" dnsmasq --keep-in-foreground --conf-file="$WORK/dns/dnsmasq.conf" --no-resolv \
    --no-hosts --addn-hosts="$WORK/dns/hosts" --listen-address="$SRV_IP" --bind-interfaces \
    --port=53 --pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/log/dnsmasq.log" \
    >"$WORK/log/dnsmasq.out" 2>&1 &

mkdir -p /run/sshd && chmod 755 /run/sshd
cat >"$S/sshd_config" <<EOF
Port 22
ListenAddress $SRV_IP
HostKey $S/host_ed25519
PidFile $WORK/sshd.pid
AuthorizedKeysFile $S/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 30
LogLevel ERROR
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
nsx "$NS_SRV" /usr/sbin/sshd -D -e -f "$S/sshd_config" >"$WORK/log/sshd.out" 2>&1 &

mkdir -p "$WORK/redis"
nsx "$NS_SRV" redis-server --bind "$SRV_IP" --port 6379 --protected-mode no --save '' \
    --appendonly no --daemonize no --dir "$WORK/redis" --logfile "$WORK/log/redis.log" \
    >/dev/null 2>&1 &

cat >"$WORK/mosquitto.conf" <<EOF
listener 1883 $SRV_IP
allow_anonymous true
persistence false
log_dest stderr
log_type error
EOF
nsx "$NS_SRV" mosquitto -c "$WORK/mosquitto.conf" >"$WORK/log/mosquitto.out" 2>&1 &

PG=$WORK/pg
mkdir -p "$PG/sock"
echo "demo-password" >"$PG/pw"
chown -R postgres:postgres "$PG"
runuser -u postgres -- "$PGBIN/initdb" -D "$PG/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$PG/pw" >"$WORK/log/initdb.log" 2>&1
echo "host all all 10.99.0.0/24 scram-sha-256" >>"$PG/data/pg_hba.conf"
nsx "$NS_SRV" runuser -u postgres -- "$PGBIN/postgres" -D "$PG/data" \
    -c listen_addresses="$SRV_IP" -c unix_socket_directories="$PG/sock" -c port=5432 \
    -c fsync=off -c synchronous_commit=off -c shared_buffers=32MB -c max_connections=40 \
    >"$WORK/log/postgres.log" 2>&1 &

for _ in $(seq 1 60); do
    runuser -u postgres -- "$PGBIN/pg_isready" -q -h "$PG/sock" && break
    sleep 0.5
done
psql_local() { runuser -u postgres -- psql -X -q -h "$PG/sock" -v ON_ERROR_STOP=1 "$@"; }
psql_local -d postgres -c "CREATE ROLE demo LOGIN PASSWORD 'demo-password'" \
    -c "CREATE DATABASE demo OWNER demo"
psql_local -d demo -U demo -c "CREATE TABLE items(id serial PRIMARY KEY, name text, price numeric)" \
    -c "INSERT INTO items(name, price) SELECT md5(g::text), (g % 997) / 10.0 FROM generate_series(1,2000) g"
runuser -u postgres -- pgbench -q -i -s 1 -h "$PG/sock" -U demo demo >"$WORK/log/pgbench-init.log" 2>&1

# wait for every server to accept connections (checked from the server namespace,
# so that nothing of this shows in the captures)
wait_port() {
    for _ in $(seq 1 60); do
        nsx "$NS_SRV" bash -c "exec 3<>/dev/tcp/$SRV_IP/$1" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "server on port $1 did not come up; logs:" >&2
    tail -n 20 "$WORK"/log/* >&2
    return 1
}
for port in 80 443 53 22 6379 5432 1883; do wait_port "$port"; done
log "servers up: nginx $(dpkg-query -W -f='${Version}' nginx-light), dnsmasq $(dpkg-query -W -f='${Version}' dnsmasq-base)," \
    "openssh $(dpkg-query -W -f='${Version}' openssh-server), redis $(dpkg-query -W -f='${Version}' redis-server)," \
    "postgres $("$PGBIN/postgres" --version | awk '{print $3}'), mosquitto $(dpkg-query -W -f='${Version}' mosquitto)"

# ----------------------------------------------------------------- sessions
NEW=$OUT/captures.new
rm -rf "$NEW"
mkdir -p "$NEW"
LABELS=$WORK/labels.csv
echo "capture,label" >"$LABELS"

record_session() {
    local label=$1 k=$2 delay jitter rate burst br td pcap
    read -r delay jitter rate < <("$PY" "$HERE/demo_traffic.py" params --seed "$SEED" --label "$label" --session "$k")
    burst=$(( rate * 1000 / 8 / 100 )); [ "$burst" -lt 4000 ] && burst=4000
    for dev in dc1 ds1; do
        nsx "$NS_MID" tc qdisc replace dev "$dev" root tbf rate "${rate}kbit" burst "$burst" latency 400ms
    done
    # (ip netns exec execs the program, so $! is its pid; background jobs of a
    # non-interactive shell ignore SIGINT, hence SIGTERM below)
    ip netns exec "$NS_MID" "$PY" "$HERE/delay_bridge.py" --if-a dc1 --if-b ds1 --delay-ms "$delay" \
        --jitter-ms "$jitter" --seed "$k" --max-seconds 180 2>>"$WORK/log/bridge.log" &
    br=$!
    mkdir -p "$NEW/$label"
    pcap=$NEW/$label/session-$k.pcap
    : >"$WORK/log/tcpdump.log"
    ip netns exec "$NS_CLI" tcpdump -i dc0 -s 0 -U -Z root -w "$pcap" 'ip and (tcp or udp)' \
        2>"$WORK/log/tcpdump.log" &
    td=$!
    for _ in $(seq 1 50); do grep -q "listening on" "$WORK/log/tcpdump.log" && break; sleep 0.1; done
    sleep 0.3
    log "$label session $k: delay ${delay}ms jitter ${jitter}ms rate ${rate}kbit"
    local rc=0
    timeout 120 ip netns exec "$NS_CLI" "$PY" "$HERE/demo_traffic.py" run "$WORK" --seed "$SEED" \
        --label "$label" --session "$k" --server "$SRV_IP" || rc=$?
    sleep 1.0   # let the last FIN/ACKs cross the delayed path
    kill -TERM "$td" 2>/dev/null || true
    wait "$td" 2>/dev/null || true
    kill -TERM "$br" 2>/dev/null || true
    wait "$br" 2>/dev/null || true
    if [ "$rc" != 0 ]; then
        echo "client driver for $label session $k failed (exit $rc)" >&2
        exit 1
    fi
    echo "$label/session-$k.pcap,$label" >>"$LABELS"
}

for k in $(seq 1 "$SESSIONS"); do
    for label in "${CLASSES[@]}"; do
        record_session "$label" "$k"
    done
done

# ----------------------------------------------------------------- publish
rm -rf "$OUT/captures"
mv "$NEW" "$OUT/captures"
cp "$LABELS" "$OUT/labels.csv"
chmod -R a+rX "$OUT/captures" "$OUT/labels.csv"
log "done: $(( $(wc -l <"$OUT/labels.csv") - 1 )) captures, $(du -sh "$OUT/captures" | cut -f1) in $OUT/captures"
