/**
 * Rules across fields, each small and named, each returning every problem it finds. They run on
 * the expanded node list, so a pattern group's problem points at the group's YAML.
 */

import { baseUrlProblem, isUrl } from '../util/base-url.js';
import { uniqueBy } from '../util/unique.js';
import { type Cidr, contains, formatNetwork, overlaps, parseCidr, parseIpv4 } from './ipv4.js';
import type { FieldPath, NodeSpec, Problem, ProfileData } from './types.js';

/** Boards with a USB OTG port that can act as an Ethernet gadget. */
export const gadgetBoards = new Set(['pi0', 'pi0w', 'pi0-2w', 'pi4', 'pi5', 'cm3', 'cm4', 'cm5']);

export const hostnamePattern = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

type Rule = (nodes: NodeSpec[]) => Problem[];

const uniqueIndices: Rule = (nodes) => {
  const seen = new Map<number, NodeSpec>();
  return nodes.flatMap((n) => {
    const other = seen.get(n.index);
    seen.set(n.index, n);
    return other
      ? [
          {
            path: [...n.source, 'index'],
            message: `node index ${n.index} is used twice (also by ${other.hostname}); give every node its own index`,
          },
        ]
      : [];
  });
};

const validHostnames: Rule = (nodes) =>
  nodes
    .filter((n) => !hostnamePattern.test(n.hostname))
    .map((n) => {
      const suggestion =
        n.hostname
          .toLowerCase()
          .replace(/[^a-z0-9-]/g, '-')
          .replace(/^-+|-+$/g, '') || 'node1';
      return {
        path: [...n.source, n.fromPattern ? 'pattern' : 'hostname'],
        message:
          `"${n.hostname}" is not a valid host name (RFC 1123: lower-case letters, digits and inner hyphens, ` +
          `at most 63); use e.g. ${suggestion}`,
      };
    });

const uniqueHostnames: Rule = (nodes) => {
  const seen = new Map<string, NodeSpec>();
  return nodes.flatMap((n) => {
    const other = seen.get(n.hostname);
    seen.set(n.hostname, n);
    return other
      ? [
          {
            path: [...n.source, n.fromPattern ? 'pattern' : 'hostname'],
            message:
              `the host name ${n.hostname} is used by nodes ${other.index} and ${n.index}; ` +
              'host names must be unique',
          },
        ]
      : [];
  });
};

const addresses: Rule = (nodes) => {
  const problems: Problem[] = [];
  const seen = new Map<number, string>();
  const subnets: { cidr: Cidr; where: string; path: (string | number)[] }[] = [];
  for (const n of nodes) {
    for (const [j, iface] of n.interfaces.entries()) {
      const path = [...n.source, 'interfaces', j];
      if (iface.address === 'dhcp') {
        if (iface.gateway !== undefined || iface.dns !== undefined)
          problems.push({
            path: [...path, iface.gateway !== undefined ? 'gateway' : 'dns'],
            message:
              `${n.hostname} ${iface.name} takes its address by DHCP, which also gives the gateway and name servers; ` +
              'remove gateway and dns, or give a static address',
          });
        continue;
      }
      const cidr = parseCidr(iface.address);
      if (!cidr) {
        // A pattern group's address can be right for its first nodes and run past 255 for later ones.
        const parts = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(iface.address)?.slice(1).map(Number);
        const overflow =
          n.fromPattern && parts !== undefined && parts[4]! <= 32 && parts.slice(0, 4).some((octet) => octet > 255);
        problems.push({
          path: [...path, 'address'],
          message: overflow
            ? `"${iface.address}" (node ${n.hostname}) is not an IPv4 address: the group's address pattern runs ` +
              'past 255 here; make fewer nodes (--nodes or count) or change the pattern'
            : `"${iface.address}" (node ${n.hostname}) ` +
              'is not an IPv4 address with a prefix, such as 10.0.11.2/24, nor dhcp',
        });
        continue;
      }
      if (
        cidr.address === cidr.network ||
        (cidr.prefix < 31 && cidr.address === cidr.network + 2 ** (32 - cidr.prefix) - 1)
      ) {
        problems.push({
          path: [...path, 'address'],
          message:
            `${iface.address} (node ${n.hostname}) is the network or broadcast address of ${formatNetwork(cidr)}; ` +
            'use a host address',
        });
      }
      const where = `${n.hostname} ${iface.name}`;
      const twin = seen.get(cidr.address);
      if (twin)
        problems.push({
          path: [...path, 'address'],
          message: `${iface.address.split('/')[0]} is given to both ${twin} and ${where}; addresses must be unique`,
        });
      seen.set(cidr.address, where);
      if (iface.gateway !== undefined) {
        const gateway = parseIpv4(iface.gateway);
        if (gateway === undefined)
          problems.push({
            path: [...path, 'gateway'],
            message: `"${iface.gateway}" (node ${n.hostname}) is not an IPv4 address`,
          });
        else if (!contains(cidr, gateway))
          problems.push({
            path: [...path, 'gateway'],
            message:
              `${iface.gateway} is outside ${formatNetwork(cidr)}, the subnet of ${where}; ` +
              'a gateway must be on the link',
          });
      }
      for (const dns of iface.dns ?? []) {
        if (parseIpv4(dns) === undefined)
          problems.push({ path: [...path, 'dns'], message: `"${dns}" (node ${n.hostname}) is not an IPv4 address` });
      }
      const clash = subnets.find(
        (s) => overlaps(s.cidr, cidr) && (s.cidr.network !== cidr.network || s.cidr.prefix !== cidr.prefix),
      );
      if (clash)
        problems.push({
          path: [...path, 'address'],
          message:
            `the subnet ${formatNetwork(cidr)} of ${where} overlaps ${formatNetwork(clash.cidr)} of ${clash.where}; ` +
            'subnets must be identical (one link) or disjoint',
        });
      // Every USB gadget is its own point-to-point link: two gadgets on one subnet collide on the host.
      if (iface.kind === 'usb-gadget') {
        const same = subnets.find(
          (s) => s.cidr.network === cidr.network && s.cidr.prefix === cidr.prefix && s.where.endsWith('(gadget)'),
        );
        if (same)
          problems.push({
            path: [...path, 'address'],
            message:
              `${where} and ${same.where.replace(' (gadget)', '')} are USB gadgets on the same subnet ` +
              `${formatNetwork(cidr)}; each gadget link needs its own subnet`,
          });
      }
      subnets.push({ cidr, where: iface.kind === 'usb-gadget' ? `${where} (gadget)` : where, path });
    }
  }
  return problems;
};

const gadgets: Rule = (nodes) => {
  const problems: Problem[] = [];
  const hostCount = nodes.filter((n) => n.role === 'host').length;
  for (const n of nodes) {
    for (const [j, iface] of n.interfaces.entries()) {
      if (iface.kind !== 'usb-gadget') continue;
      const path = [...n.source, 'interfaces', j];
      if (!gadgetBoards.has(n.board))
        problems.push({
          path: [...path, 'kind'],
          message:
            `${n.hostname} is a ${n.board}, which has no USB OTG port; ` +
            `a usb-gadget interface needs one of ${[...gadgetBoards].join(', ')}`,
        });
      if (hostCount !== 1)
        problems.push({
          path: [...path, 'kind'],
          message: `usb-gadget links need exactly one node with role host to plug into; the profile has ${hostCount}`,
        });
      if (iface.gateway === undefined)
        problems.push({
          path: [...path],
          message: `gateway is missing: on a usb-gadget link it is the host's address on that link; add gateway`,
        });
    }
  }
  return problems;
};

const baseImages: Rule = (nodes) =>
  nodes
    .filter((n) => n.board !== 'pc' && n.base === undefined)
    .map((n) => ({
      path: [...n.source],
      message: `no base image for ${n.hostname}; add base: { image: … } at the top of the profile or to this group`,
    }));

const interfaceNames: Rule = (nodes) =>
  nodes.flatMap((n) => {
    const seen = new Set<string>();
    return n.interfaces.flatMap((iface, j) => {
      const path = [...n.source, 'interfaces', j];
      const problems: Problem[] = [];
      if (seen.has(iface.name))
        problems.push({
          path: [...path, 'name'],
          message: `${n.hostname} lists the interface ${iface.name} twice; give each interface once`,
        });
      seen.add(iface.name);
      if (iface.kind === 'wifi' && iface.country === undefined)
        problems.push({
          path,
          message:
            'country is missing: Raspberry Pi OS keeps Wi-Fi blocked until a country is set; ' +
            'add country: GB (your ISO 3166 code)',
        });
      if (iface.kind !== 'wifi' && iface.country !== undefined)
        problems.push({
          path: [...path, 'country'],
          message: `applies only to wifi interfaces; remove it from ${iface.name}`,
        });
      return problems;
    });
  });

export const rules: Rule[] = [
  uniqueIndices,
  validHostnames,
  uniqueHostnames,
  addresses,
  interfaceNames,
  gadgets,
  baseImages,
];

/** Rules on the cluster-wide sections (admin, nfs) that need the node list. */
export function checkCluster(profile: ProfileData, nodes: NodeSpec[]): Problem[] {
  const problems: Problem[] = [];
  const { admin, nfs } = profile;
  // A base URL the build would refuse to download from (the download's own check, word for word).
  const bases: [FieldPath, string | undefined][] = [
    [['base', 'image'], profile.base?.image],
    ...profile.nodes.map((n, i): [FieldPath, string | undefined] => [['nodes', i, 'base', 'image'], n.base?.image]),
  ];
  for (const [path, image] of bases) {
    const problem = image !== undefined && isUrl(image) ? baseUrlProblem(image) : undefined;
    if (problem) problems.push({ path, message: problem });
  }
  if (admin) {
    if (admin.passwordHash !== undefined && admin.passwordFile !== undefined)
      problems.push({
        path: ['admin', 'passwordFile'],
        message: 'give either passwordHash or passwordFile, not both; remove one',
      });
    if (admin.passwordHash === undefined && admin.passwordFile === undefined)
      problems.push({
        path: ['admin'],
        message:
          'passwordHash or passwordFile is missing: Raspberry Pi OS creates no user without a password; ' +
          'add passwordFile: admin.password (a file holding the password) or passwordHash: $6$… (openssl passwd -6)',
      });
    if (['root', 'daemon', 'bin', 'sys', 'nobody', 'docker'].includes(admin.user))
      problems.push({
        path: ['admin', 'user'],
        message: `${admin.user} is a system account; choose another name such as admin`,
      });
  }
  const formats = new Map<string, number>();
  for (const [i, text] of (profile.output?.compress ?? []).entries()) {
    const format = text.split(':')[0]!;
    if (formats.has(format))
      problems.push({
        path: ['output', 'compress', i],
        message: `${format} is listed twice (also item ${formats.get(format)! + 1}); give each format once`,
      });
    formats.set(format, i);
  }
  if (nfs) {
    const paths = new Set<string>();
    for (const [j, mount] of nfs.mounts.entries()) {
      if (paths.has(mount.path))
        problems.push({
          path: ['nfs', 'mounts', j, 'path'],
          message: `${mount.path} is mounted twice; give each mount its own path`,
        });
      paths.add(mount.path);
      if (mount.path === '/shared')
        problems.push({
          path: ['nfs', 'mounts', j, 'path'],
          message:
            '/shared is the link swarmcard makes to the cluster export; ' +
            'mount under /mnt (e.g. /mnt/cluster) and set shared to it',
        });
    }
    if (nfs.shared !== undefined && ![...paths].some((p) => nfs.shared === p || nfs.shared!.startsWith(`${p}/`))) {
      problems.push({
        path: ['nfs', 'shared'],
        message: `${nfs.shared} is not on any NFS mount; use one of ${[...paths].join(', ')} or a folder under one`,
      });
    }
  }
  if (profile.etcHosts && !nodes.some((n) => n.interfaces.some((i) => i.address !== 'dhcp'))) {
    problems.push({
      path: ['etcHosts'],
      message:
        'no node has a static address to list in /etc/hosts; ' +
        'remove etcHosts (nodes find each other as <hostname>.local over mDNS)',
    });
  }
  return problems;
}

export function checkRules(nodes: NodeSpec[]): Problem[] {
  // A pattern group repeats its problem for every node; report each message once per field.
  return uniqueBy(
    rules.flatMap((rule) => rule(nodes)),
    (p) => `${p.path.join('.')}\0${p.message.replace(/\d+/g, '#')}`,
  );
}
