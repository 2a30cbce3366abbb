/**
 * The admin user, rendered for the release found in the image (pure; docs/raspios.md #10, #4):
 * - bullseye (2022-04+) and bookworm: `userconf.txt` on the boot partition, `name:$6$…`; first boot
 *   renames the first user to it, sets the password and deletes the file;
 * - trixie: cloud-init `user-data` on the boot partition (as Raspberry Pi Imager 2 writes it). Only
 *   one of the two: both would create the user twice.
 * The keys go in through the admin-user overlay's unit once the user exists.
 */
import { stringify } from 'yaml';
import type { ImageEdit } from '../plan/edits.js';
import type { Target } from './target.js';

/** The groups Raspberry Pi OS gives its first user (pi-gen), so the admin can use the hardware. */
export const ADMIN_GROUPS = [
  'adm',
  'dialout',
  'cdrom',
  'sudo',
  'audio',
  'video',
  'plugdev',
  'games',
  'users',
  'input',
  'render',
  'netdev',
  'gpio',
  'i2c',
  'spi',
];

export function renderAdmin(
  target: Target,
  admin: { user: string; authorizedKeys: string[] },
  passwordHash: string,
): ImageEdit[] {
  const origin = 'admin';
  // A release that creates no user is refused before a build when the profile has an admin.
  if (target.users !== 'cloud-init')
    return [
      { origin, op: 'write', partition: 'boot', path: '/userconf.txt', content: `${admin.user}:${passwordHash}\n` },
    ];
  const userData = {
    users: [
      {
        name: admin.user,
        groups: ADMIN_GROUPS.join(','),
        shell: '/bin/bash',
        sudo: 'ALL=(ALL) NOPASSWD:ALL',
        lock_passwd: false,
        passwd: passwordHash,
        ...(admin.authorizedKeys.length > 0 ? { ssh_authorized_keys: admin.authorizedKeys } : {}),
      },
    ],
    ssh_pwauth: true,
  };
  return [
    {
      origin,
      op: 'write',
      partition: 'boot',
      path: '/user-data',
      content:
        '#cloud-config\n# swarmcard: the admin user. The password hash is a secret: keep this image private.\n' +
        stringify(userData, { lineWidth: 0 }),
    },
  ];
}
