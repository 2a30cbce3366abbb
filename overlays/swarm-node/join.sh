#!/bin/sh
# swarmcard join: the forced command of the cluster key in root's authorized_keys
# (restrict,command="/usr/local/lib/swarmcard/join"). Reads "token …" and "manager …" lines on
# stdin and joins this node to the swarm; does nothing when it is already in it. The token is
# never printed. Exit 75 (try again later) while Docker is not running yet.
set -u
CONF=${SWARMCARD_CONF:-/etc/swarmcard}
# shellcheck source=/dev/null
. "$CONF/swarm.env"

token='' manager=''
while read -r key value; do
  case $key in
    token) token=$value ;;
    manager) manager=$value ;;
  esac
done
case $token in SWMTKN-1-*) ;; *) echo "no join token received" >&2; exit 65 ;; esac
case $manager in '' | *[!0-9A-Za-z.:-]*) echo "no valid manager address received" >&2; exit 65 ;; esac
case $manager in *:*) ;; *) manager="$manager:2377" ;; esac

if ! docker info >/dev/null 2>&1; then echo "Docker is not running yet" >&2; exit 75; fi
state=$(docker info --format '{{.Swarm.LocalNodeState}}')
case $state in
  active)
    echo "already in the swarm"
    exit 0 ;;
  pending | error)
    # A join that was interrupted (a restart half-way): start it over.
    docker swarm leave --force >/dev/null 2>&1 || true ;;
esac
if docker swarm join --token "$token" --advertise-addr "$SELF_ADDRESS" "$manager" >/dev/null 2>&1; then
  echo "joined the swarm at $manager"
else
  echo "joining the swarm at $manager failed" >&2
  exit 75
fi
