#!/usr/bin/env bash
# A real local Redis Cluster for tests, benchmarks and trying Larder out: N masters with R replicas
# each (3 + 3 by default), plain `redis-server` processes on spare local ports, nothing on disk but
# the cluster's own config files and logs.
#
#   scripts/redis-cluster.sh start           start (or reuse) the cluster; prints its ports on stdout
#   scripts/redis-cluster.sh stop            stop every node by PID and remove the state directory
#   scripts/redis-cluster.sh status          one line per node; exit 0 only if all are up and ok
#   scripts/redis-cluster.sh restart-node P  start node P again with its config (after a kill)
#
# Environment:
#   LARDER_CLUSTER_DIR           state directory (ports, PIDs, nodes.conf, logs)
#                                default: ${TMPDIR:-/tmp}/larder-redis-cluster
#   LARDER_CLUSTER_MASTERS       masters, default 3
#   LARDER_CLUSTER_REPLICAS      replicas per master, default 1
#   LARDER_CLUSTER_NODE_TIMEOUT  cluster-node-timeout in ms (failure detection), default 2000
#
# Ports are picked at random below the kernel's ephemeral range (so they do not collide with
# connections other programs open), with the cluster bus port (port + 10000) free too; a node that
# cannot bind gets another port. `start` is idempotent: a running, healthy cluster in the same
# directory is reused, a broken one is stopped and replaced. Several clusters can run at once in
# different directories. Readiness is polled (PING, CLUSTER INFO, replication links), not guessed.
set -euo pipefail

DIR="${LARDER_CLUSTER_DIR:-${TMPDIR:-/tmp}/larder-redis-cluster}"
MASTERS="${LARDER_CLUSTER_MASTERS:-3}"
REPLICAS="${LARDER_CLUSTER_REPLICAS:-1}"
NODE_TIMEOUT="${LARDER_CLUSTER_NODE_TIMEOUT:-2000}"
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
REDIS_CLI="${REDIS_CLI:-redis-cli}"
NODES=$((MASTERS * (1 + REPLICAS)))

log() { echo "redis-cluster: $*" >&2; }
die() {
  log "$*"
  exit 1
}
cli() { "$REDIS_CLI" -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null; }

# Waits until `$@` succeeds, polling every 50 ms, for at most $TIMEOUT_S seconds (default 30).
poll() {
  local deadline=$((SECONDS + ${TIMEOUT_S:-30}))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$DIR/$1/pid" 2>/dev/null || true; }
ports() { cat "$DIR/ports" 2>/dev/null || true; }

# Starts node $1 in the background (its config, data and log live in $DIR/$1); returns once it
# answers as the process we started, or fails if it died (port taken). $2 = keep: on failure,
# leave the node's directory (its nodes.conf) in place.
start_node() {
  local port=$1 node="$DIR/$1" keep=${2:-}
  mkdir -p "$node"
  # The node outlives this script: its stdio goes to files so no caller waits on our pipes.
  nohup "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --protected-mode no \
    --cluster-enabled yes --cluster-config-file "$node/nodes.conf" --cluster-node-timeout "$NODE_TIMEOUT" \
    --dir "$node" --save "" --appendonly no --repl-diskless-sync-delay 0 --logfile "$node/redis.log" --daemonize no \
    </dev/null >"$node/stdout.log" 2>&1 9>&- &
  local pid=$!
  echo "$pid" >"$node/pid"
  is_ours() {
    alive "$pid" || return 2
    [ "$(cli "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')" = "$pid" ]
  }
  local deadline=$((SECONDS + 10))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if is_ours; then return 0; fi
    alive "$pid" || break
    sleep 0.02
  done
  kill -KILL "$pid" 2>/dev/null || true
  [ "$keep" = keep ] || rm -rf "$node"
  return 1
}

# A port P such that P and P + 10000 are free, below the ephemeral range; not one in $taken.
pick_port() {
  local low high port
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
  high=$((low - 10000))
  for _ in $(seq 1 200); do
    port=$((15000 + RANDOM % (high - 15000)))
    case " $taken " in *" $port "*) continue ;; esac
    if ! listening "$port" && ! listening $((port + 10000)); then
      echo "$port"
      return 0
    fi
  done
  return 1
}

cluster_ok() {
  local port info
  for port in $(ports); do
    info=$(cli "$port" cluster info | tr -d '\r') || return 1
    case "$info" in *cluster_state:ok*) ;; *) return 1 ;; esac
    case "$info" in *cluster_slots_ok:16384*) ;; *) return 1 ;; esac
    case "$info" in *"cluster_known_nodes:$NODES"*) ;; *) return 1 ;; esac
  done
}

replicas_synced() {
  local port info
  for port in $(ports); do
    info=$(cli "$port" info replication | tr -d '\r') || return 1
    case "$info" in *role:slave*) case "$info" in *master_link_status:up*) ;; *) return 1 ;; esac ;; esac
  done
}

all_alive() {
  local port
  [ -n "$(ports)" ] || return 1
  for port in $(ports); do alive "$(pid_of "$port")" || return 1; done
}

do_stop() {
  local port pid
  for port in $(ports); do
    pid=$(pid_of "$port")
    if alive "$pid"; then
      kill -CONT "$pid" 2>/dev/null || true
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for port in $(ports); do
    pid=$(pid_of "$port")
    TIMEOUT_S=5 poll eval "! alive $pid" || kill -KILL "$pid" 2>/dev/null || true
    # Only what this script created: never a recursive delete of $DIR itself.
    rm -rf "${DIR:?}/$port"
  done
  rm -f "$DIR/ports" "$DIR/create.log"
}

do_start() {
  if all_alive && TIMEOUT_S=2 poll cluster_ok; then
    log "already running in $DIR"
    echo "$(ports)"
    return 0
  fi
  [ -n "$(ports)" ] && log "stale cluster in $DIR: replacing it" && do_stop
  command -v "$REDIS_SERVER" >/dev/null || die "$REDIS_SERVER not found"
  local taken="" port attempts
  for _ in $(seq 1 "$NODES"); do
    attempts=0
    until port=$(pick_port) && start_node "$port"; do
      attempts=$((attempts + 1))
      [ "$attempts" -lt 20 ] || die "could not start a node (see $DIR/*/redis.log)"
    done
    taken="$taken $port"
    echo "${taken# }" >"$DIR/ports"
  done
  local addresses=()
  for port in $(ports); do addresses+=("127.0.0.1:$port"); done
  "$REDIS_CLI" --cluster create "${addresses[@]}" --cluster-replicas "$REPLICAS" --cluster-yes >"$DIR/create.log" 2>&1 ||
    {
      cat "$DIR/create.log" >&2
      die "redis-cli --cluster create failed"
    }
  poll cluster_ok || die "the cluster did not reach cluster_state:ok"
  poll replicas_synced || die "the replicas did not sync"
  log "up: $MASTERS masters x $REPLICAS replicas in $DIR"
  echo "$(ports)"
}

do_status() {
  local port pid role ok=0
  [ -n "$(ports)" ] || {
    log "not running ($DIR)"
    return 1
  }
  for port in $(ports); do
    pid=$(pid_of "$port")
    if alive "$pid" && role=$(cli "$port" role | head -n 1); then
      echo "$port pid=$pid role=$role $(cli "$port" cluster info | tr -d '\r' | grep '^cluster_state:')"
    else
      echo "$port pid=${pid:-?} down"
      ok=1
    fi
  done
  [ "$ok" = 0 ] && cluster_ok
}

if [ ! -d "$DIR" ]; then
  case "${1:-}" in
  stop) exit 0 ;;
  status)
    log "not running ($DIR)"
    exit 1
    ;;
  esac
fi
mkdir -p "$DIR"
# One command at a time per state directory.
exec 9>"$DIR/.lock"
flock 9

case "${1:-}" in
start) do_start ;;
stop)
  do_stop
  # The directory goes only if nothing else is in it (never a recursive delete of $DIR).
  rm -f "$DIR/.lock"
  rmdir "$DIR" 2>/dev/null || true
  ;;
status) do_status ;;
restart-node)
  port="${2:?usage: $0 restart-node PORT}"
  case " $(ports) " in *" $port "*) ;; *) die "$port is not a node of the cluster in $DIR" ;; esac
  alive "$(pid_of "$port")" && die "node $port is running"
  [ -f "$DIR/$port/nodes.conf" ] || die "no config for node $port"
  # Same port, same nodes.conf: the node rejoins (a former master comes back as a replica).
  start_node "$port" keep || die "node $port did not start"
  echo "$port"
  ;;
*)
  echo "usage: $0 start|stop|status|restart-node PORT" >&2
  exit 2
  ;;
esac
