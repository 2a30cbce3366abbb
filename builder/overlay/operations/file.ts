/**
 * file: copy a file of the overlay into the image, byte for byte.
 *
 *   - file:
 *       path: /usr/local/lib/swarmcard/firstboot
 *       source: firstboot.sh
 *       mode: "0755"
 *
 * Properties:
 * - path (required): where in the partition; a template.
 * - source (required): the file, relative to the overlay's directory.
 * - partition: `root` (default) or `boot`.
 * - mode: octal string such as "0644"; uid, gid: numeric owner (root when absent).
 * - when: a boolean parameter that must be true (`!name`: false).
 */
import { writeFileOperation } from './common.js';

export const file = writeFileOperation({ render: false });
