/**
 * template: render a Handlebars file of the overlay and write the result into the image. The
 * template sees `cluster` (name, nodes), `node` (the node's plan), `params` and `links` (a host's
 * gadget links); it renders without HTML escaping and fails on an unknown name. Helpers:
 * shellQuote, join, add, pad.
 *
 *   - template:
 *       path: /etc/swarmcard/swarm.env
 *       source: swarm.env.hbs
 *
 * Properties:
 * - path (required): where in the partition; a template itself.
 * - source (required): the template, relative to the overlay's directory.
 * - partition: `root` (default) or `boot`.
 * - mode: octal string such as "0755"; uid, gid: numeric owner (root when absent).
 * - when: a boolean parameter that must be true (`!name`: false).
 */
import { writeFileOperation } from './common.js';

export const template = writeFileOperation({ render: true });
