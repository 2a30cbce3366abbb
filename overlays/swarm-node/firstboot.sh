#!/bin/sh
# swarmcard first boot. Waits for a sane clock and this node's address, installs Docker when it
# is missing, then takes this node's part in the swarm:
#   manager: docker swarm init, then every INTERVAL seconds: push the join token over SSH to every
#            planned node that is not Ready (also one that was re-flashed), label nodes, drop stale
#            entries, and once every planned node is Ready — or DEPLOY_AFTER seconds after the swarm
#            began, naming who is missing and still inviting them — create the networks and deploy
#            the stacks. A stack that stores data on shared storage (stacks/NAME.mounts) waits for
#            its mounts; nothing else does.
#   worker:  nothing more: the manager pushes the token; sshd runs /usr/local/lib/swarmcard/join.
#   join:    join an existing swarm with the token baked into the image.
# Shared storage (NFS) never holds up Docker or the swarm: a NAS that is down or not there yet
# is tried again every INTERVAL seconds, and the journal says what waits for it.
# Idempotent (state in /var/lib/swarmcard) and safe to run again. Logs go to the journal; no join
# token is ever printed. SWARMCARD_CONF/SWARMCARD_STATE/SWARMCARD_ONCE exist for tests.
set -u
CONF=${SWARMCARD_CONF:-/etc/swarmcard}
STATE=${SWARMCARD_STATE:-/var/lib/swarmcard}
# shellcheck source=/dev/null
. "$CONF/swarm.env"
ROLE=${ROLE:?swarm.env sets no ROLE}
umask 077
mkdir -p "$STATE"

log() { echo "swarmcard: $*"; }

# Run "$@" until it succeeds, waiting 5 s, 10 s, 20 s … up to 5 minutes between tries.
retry() {
  delay=5
  until "$@"; do
    log "$1 not done yet; trying again in ${delay}s"
    sleep "$delay"
    delay=$((delay * 2))
    if [ "$delay" -gt 300 ]; then delay=300; fi
  done
}

# A Pi has no real-time clock: until NTP answers, the clock may sit in the past, and TLS and apt
# fail. Never trust a time earlier than the image was built.
clock_is_sane() { [ "$(date +%s)" -ge "$BUILD_EPOCH" ]; }

address_is_up() {
  case $SELF_ADDRESS in
    *[!0-9.]*) ip link show "$SELF_ADDRESS" >/dev/null 2>&1 ;; # an interface name
    *) ip -o -4 addr show | grep -q " inet $SELF_ADDRESS/" ;;
  esac
}

# Shared storage (NFS, listed in $CONF/mounts; the stacks that store data there list theirs in
# $CONF/stacks/NAME.mounts). Nothing waits for it but those stacks, so a NAS that is down stops
# no swarm; they wait, so a registry never writes to the SD card under an empty mount point.
unmounted() { # the mount points in file $1 that are not mounted yet, space-separated
  [ -f "$1" ] || return 0
  while read -r point; do
    if [ -n "$point" ] && ! mountpoint -q "$point"; then printf '%s ' "$point"; fi
  done <"$1"
}

have_nfs_client() { command -v mount.nfs4 >/dev/null 2>&1 || [ -x /sbin/mount.nfs4 ]; }

# The NFS client, when missing, at most every 5 minutes (apt needs the network too).
nfs_client() {
  if have_nfs_client; then return 0; fi
  now=$(date +%s)
  if [ $((now - ${nfs_tried:-0})) -lt 300 ]; then return 1; fi
  nfs_tried=$now
  log "installing nfs-common for the shared mounts"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nfs-common; } >/dev/null 2>&1
}

# One try at every missing mount; true when all are mounted. A NAS that does not answer costs
# at most 30 s a try (mount.nfs would otherwise retry for minutes).
try_mounts() {
  missing_mounts=$(unmounted "$CONF/mounts")
  [ -n "$missing_mounts" ] || return 0
  nfs_client || return 1
  for point in $missing_mounts; do
    if timeout 30 mount "$point" >/dev/null 2>&1; then log "$point mounted"; fi
  done
  [ -z "$(unmounted "$CONF/mounts")" ]
}

# Every node: once Docker runs, keep trying the shared mounts (containers of stacks may use them).
wait_for_mounts() {
  if try_mounts; then return 0; fi
  waited=${missing_mounts% }
  log "waiting for $waited (shared storage); the swarm does not wait for it"
  until try_mounts; do
    if [ -n "${SWARMCARD_ONCE:-}" ]; then return 0; fi
    sleep "$INTERVAL"
  done
  log "$waited mounted"
}

docker_runs() { docker info >/dev/null 2>&1; }

install_docker() {
  if command -v docker >/dev/null 2>&1; then return 0; fi
  log "installing Docker ($DOCKER_METHOD${DOCKER_VERSION:+ $DOCKER_VERSION})"
  case $DOCKER_METHOD in
    apt)
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io ;;
    convenience)
      curl -fsSL https://get.docker.com -o "$STATE/get-docker.sh" &&
        VERSION=$DOCKER_VERSION sh "$STATE/get-docker.sh" ;;
    *)
      log "Docker is missing although the profile says the image has it"
      return 1 ;;
  esac
}

start_docker() {
  if docker_runs; then return 0; fi
  if [ -d /run/systemd/system ]; then systemctl enable --now docker.service >/dev/null 2>&1 || true; fi
  docker_runs
}

swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

init_swarm() {
  if [ "$(swarm_state)" = active ]; then return 0; fi
  log "initialising the swarm, advertising $SELF_ADDRESS"
  # The output contains the join command with its token: never let it reach the journal.
  docker swarm init --advertise-addr "$SELF_ADDRESS" >/dev/null
}

join_existing() {
  if [ "$(swarm_state)" = active ]; then return 0; fi
  log "joining the existing swarm at $MANAGER_ADDRESS"
  printf 'token %s\nmanager %s\n' "$(cat "$CONF/join-token")" "$MANAGER_ADDRESS" | "$(dirname "$0")/join"
}

node_is_ready() {
  docker node ls --format '{{.Hostname}} {{.Status}}' 2>/dev/null | grep -qx "$1 Ready"
}

# Give a node its join token over SSH; its authorized_keys runs only the join script.
push_join() {
  name=$1 address=$2 role=$3
  token_kind=worker
  if [ "$role" = manager ]; then token_kind=manager; fi
  if ! docker swarm join-token -q "$token_kind" >"$STATE/token" 2>/dev/null; then return 1; fi
  log "pushing the $token_kind join token to $name ($address)"
  # Host keys are new after every flash, so they cannot be known in advance.
  # ssh's own status, not sed's: the manager says so when a node is not reachable.
  rm -f "$STATE/push-status"
  printf 'token %s\nmanager %s\n' "$(cat "$STATE/token")" "$(reachable_address)" |
    {
      ssh -i "$CONF/cluster_key" -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "root@$address" 2>&1
      echo "$?" >"$STATE/push-status"
    } | sed "s/^/swarmcard: $name: /"
  rc=$(cat "$STATE/push-status" 2>/dev/null || echo 1)
  rm -f "$STATE/token" "$STATE/push-status"
  return "$rc"
}

# The address workers join: the planned one, or (DHCP) the one the swarm advertises now.
reachable_address() {
  case $MANAGER_ADDRESS in
    *[!0-9.]*) docker info --format '{{.Swarm.NodeAddr}}' 2>/dev/null ;;
    *) echo "$MANAGER_ADDRESS" ;;
  esac
}

label_node() {
  name=$1 labels=$2
  args=""
  for label in $(echo "$labels" | tr ',' ' '); do args="$args --label-add $label"; done
  # shellcheck disable=SC2086 # one word per --label-add
  docker node update $args "$name" >/dev/null 2>&1 || log "could not label $name yet"
}

# A re-flashed node joins again under a new id; its old entry stays Down. Remove those.
drop_stale_nodes() {
  docker node ls --format '{{.ID}} {{.Hostname}} {{.Status}}' 2>/dev/null | while read -r id host status; do
    if [ "$status" = Down ] && node_is_ready "$host"; then
      log "removing the stale entry of $host"
      docker node rm --force "$id" >/dev/null 2>&1 || true
    fi
  done
}

# Networks, then every stack not deployed yet whose shared mounts are up; $STATE/deployed once
# all are. A stack waiting for storage is named in the journal once per run.
deploy_stacks() {
  if [ -f "$STATE/deployed" ]; then return 0; fi
  if [ -f "$CONF/networks" ]; then
    while read -r network; do
      [ -n "$network" ] || continue
      docker network inspect "$network" >/dev/null 2>&1 ||
        docker network create --driver overlay --attachable "$network" >/dev/null || return 1
      log "network $network ready"
    done <"$CONF/networks"
  fi
  waiting=0
  for compose in "$CONF"/stacks/*.yml; do
    [ -f "$compose" ] || continue
    stack=$(basename "$compose" .yml)
    if [ -f "$STATE/deployed-$stack" ]; then continue; fi
    needs=$(unmounted "$CONF/stacks/$stack.mounts")
    if [ -n "$needs" ]; then
      waiting=1
      case " $told_waiting " in
        *" $stack "*) ;;
        *)
          log "waiting for ${needs% } for stack $stack; the swarm is up"
          told_waiting="$told_waiting $stack" ;;
      esac
      continue
    fi
    if [ -f "$CONF/stacks/$stack.dirs" ]; then
      xargs mkdir -p <"$CONF/stacks/$stack.dirs" || return 1
    fi
    # shellcheck source=/dev/null
    (set -a && if [ -f "$CONF/stacks/$stack.env" ]; then . "$CONF/stacks/$stack.env"; fi &&
      docker stack deploy --compose-file "$compose" "$stack" >/dev/null) || return 1
    touch "$STATE/deployed-$stack"
    log "stack $stack deployed"
  done
  if [ "$waiting" -eq 0 ]; then touch "$STATE/deployed"; fi
}

# The grace period runs from the swarm's first round (kept across restarts).
grace_is_over() {
  if [ ! -s "$STATE/swarm-since" ]; then date +%s >"$STATE/swarm-since"; fi
  [ $(($(date +%s) - $(cat "$STATE/swarm-since"))) -ge "${DEPLOY_AFTER:-600}" ]
}

manage_round() {
  missing=''
  while read -r name address role labels; do
    case $name in '' | '#'*) continue ;; esac
    if [ "$name" != "$NODE_NAME" ] && ! node_is_ready "$name"; then
      missing="$missing $name"
      push_join "$name" "$address" "$role" || log "$name ($address) is not reachable yet"
      continue
    fi
    label_node "$name" "$labels"
  done <"$CONF/nodes"
  drop_stale_nodes
  try_mounts || true
  if [ -z "$missing" ]; then
    deploy_stacks || log "deploying the stacks failed; trying again next round"
  elif grace_is_over; then
    # Once per set of missing nodes: the swarm reschedules onto them when they come.
    if [ ! -f "$STATE/deployed" ] && [ "$missing" != "${told_missing:-}" ]; then
      log "deploying the stacks without$missing (not Ready ${DEPLOY_AFTER:-600} s after the swarm began);" \
        "still inviting them"
      told_missing=$missing
    fi
    deploy_stacks || log "deploying the stacks failed; trying again next round"
  else
    log "$(echo "$missing" | wc -w) planned node(s) not Ready yet:$missing"
  fi
}

retry clock_is_sane
retry address_is_up
retry install_docker
retry start_docker

told_waiting='' told_missing=''
case $ROLE in
  manager)
    retry init_swarm
    if ! try_mounts; then log "${missing_mounts% } not mounted yet (shared storage); the swarm does not wait for it"; fi
    while :; do
      manage_round
      if [ -n "${SWARMCARD_ONCE:-}" ]; then break; fi
      sleep "$INTERVAL"
    done ;;
  join)
    retry join_existing
    wait_for_mounts ;;
  *)
    touch "$STATE/ready"
    log "Docker is running; the manager at $MANAGER_ADDRESS pushes the join token over SSH"
    wait_for_mounts ;;
esac
