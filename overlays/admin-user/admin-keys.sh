#!/bin/sh
# swarmcard admin-keys: put the keys staged in /etc/swarmcard/admin into the admin's ~/.ssh:
#   authorized_keys  the admin's public keys (and the cluster public key when the profile says so)
#   id_ed25519(.pub) the cluster key, so the admin can SSH from this node to every other
# Runs at every boot; adds only missing lines, so keys the admin added by hand stay. Waits up to
# five minutes for the user, which first boot creates. SWARMCARD_CONF exists for tests.
set -eu
CONF=${SWARMCARD_CONF:-/etc/swarmcard}/admin
# shellcheck source=/dev/null
. "$CONF/admin.env"

tries=0
until entry=$(getent passwd "$ADMIN_USER"); do
  tries=$((tries + 1))
  if [ "$tries" -gt 60 ]; then echo "swarmcard: user $ADMIN_USER does not exist; no keys installed" >&2; exit 1; fi
  sleep 5
done
home=$(echo "$entry" | cut -d: -f6)
uid=$(echo "$entry" | cut -d: -f3)
gid=$(echo "$entry" | cut -d: -f4)

install -d -m 0700 -o "$uid" -g "$gid" "$home/.ssh"
keys="$home/.ssh/authorized_keys"
touch "$keys"
for source in "$CONF/authorized_keys" "$CONF/id_ed25519.pub"; do
  [ -f "$source" ] || continue
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    grep -qxF "$line" "$keys" || printf '%s\n' "$line" >>"$keys"
  done <"$source"
done
chown "$uid:$gid" "$keys"
chmod 0600 "$keys"
if [ -f "$CONF/id_ed25519" ]; then
  install -m 0600 -o "$uid" -g "$gid" "$CONF/id_ed25519" "$home/.ssh/id_ed25519"
  install -m 0644 -o "$uid" -g "$gid" "$CONF/id_ed25519.pub" "$home/.ssh/id_ed25519.pub"
fi
echo "swarmcard: SSH keys of $ADMIN_USER installed"
