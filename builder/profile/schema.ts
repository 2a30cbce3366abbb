/**
 * The profile format, written once: TypeBox gives the static types, the validator that reports
 * every problem with its path, and the JSON Schema editors use (profiles/schema.json, generated
 * by `swarmcard schema` and checked by a test).
 *
 * A profile is one cluster:
 *   cluster: pizero-otg
 *   sourceDateEpoch: 1700000000
 *   base: { image: https://…/raspios-trixie-armhf-lite.img.xz, sha256: … }
 *   nodes:
 *     - { index: 0, hostname: otghost1, role: host, board: pi3, overlays: [{ id: otg-host }] }
 *     - { pattern: "otg{k}", first: 1, count: 4, role: worker, board: pi0,
 *         interfaces: [{ name: usb0, kind: usb-gadget, address: "10.0.{k+10}.2/24", gateway: "10.0.{k+10}.1" }] }
 * Strings in a pattern group may use `{k}` and integer arithmetic on it (`{k+10}`, `{k/250}`, `{k%250}`).
 */
import { type TSchema, Type } from '@sinclair/typebox';
import { EPOCH_MAX, EPOCH_MIN, epochRange } from '../util/epoch.js';

/** The most nodes a cluster may have (`count`, `--nodes`), and the highest node index and first index. */
export const MAX_NODES = 9999;

const Hostname = Type.String({
  description: 'RFC 1123 host name (a-z, 0-9, -), or in a pattern group a template with {k}.',
  minLength: 1,
});
const Sha256 = Type.String({
  pattern: '^[0-9a-fA-F]{64}$',
  hint: 'must be 64 hex digits (sha256sum of the image file)',
  description: 'sha256 of the image file as downloaded (hex).',
});

export const Base = Type.Object(
  {
    image: Type.String({
      minLength: 1,
      description:
        'Path (relative to the profile) or https:// URL of a Raspberry Pi OS image: .img, .img.xz, .zip, ' +
        '.img.gz or .img.zst.',
    }),
    sha256: Type.Optional(Sha256),
  },
  { additionalProperties: false, description: 'The Raspberry Pi OS image nodes are cloned from.' },
);

export const boards = [
  'pi0',
  'pi0w',
  'pi1',
  'pi2',
  'pi3',
  'pi0-2w',
  'pi4',
  'pi400',
  'pi5',
  'pi500',
  'cm3',
  'cm4',
  'cm5',
  'pc',
] as const;
export const roles = ['host', 'manager', 'worker'] as const;

export const Interface = Type.Object(
  {
    name: Type.String({
      pattern: '^[a-z][a-z0-9_.-]{0,14}$',
      hint: 'must be an interface name such as eth0 or usb0',
      description: 'Interface name as the node sees it: usb0, eth0, wlan0.',
    }),
    kind: Type.Union([Type.Literal('usb-gadget'), Type.Literal('ethernet'), Type.Literal('wifi')], {
      description:
        'usb-gadget: the node is a USB OTG Ethernet gadget (g_ether) cabled to the host; ethernet: a normal port; ' +
        'wifi: the wireless LAN named in the secrets file.',
    }),
    address: Type.String({ description: 'Static IPv4 address with prefix, e.g. 10.0.{k+10}.2/24, or dhcp.' }),
    country: Type.Optional(
      Type.String({
        pattern: '^[A-Z]{2}$',
        hint: 'must be a two-letter ISO 3166 country code in capitals, such as GB or US',
        description:
          'wifi: the regulatory country (ISO 3166 alpha-2), required: without it the Pi keeps Wi-Fi blocked.',
      }),
    ),
    gateway: Type.Optional(Type.String({ description: 'Default router on this interface.' })),
    dns: Type.Optional(Type.Array(Type.String(), { description: 'Name servers.' })),
  },
  { additionalProperties: false },
);

export const OverlayUse = Type.Object(
  {
    id: Type.String({
      pattern: '^[a-z0-9][a-z0-9-]*$',
      hint: 'must be an overlay directory name such as otg-gadget',
      description: 'Directory name under overlays/.',
    }),
    params: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), { description: "Values for the overlay's declared parameters." }),
    ),
  },
  { additionalProperties: false },
);

export const Docker = Type.Object(
  {
    method: Type.Union([Type.Literal('apt'), Type.Literal('convenience'), Type.Literal('preinstalled')], {
      description:
        "How Docker gets onto a node that lacks it at first boot: apt (the release's docker.io), " +
        "convenience (Docker's get.docker.com script), preinstalled (the base has it).",
    }),
    version: Type.Optional(
      Type.String({
        pattern: '^\\d+(\\.\\d+){0,2}$',
        hint: 'must be a Docker version such as 28.5',
        description:
          "convenience: the Docker version to install (the script's VERSION); " +
          'required on ARMv6 boards (Pi 1, Zero, Zero W), where Docker 29 and later do not run.',
      }),
    ),
  },
  { additionalProperties: false },
);

export const Swarm = Type.Object(
  {
    manager: Type.Optional(
      Type.String({
        description:
          'Host name of the node that runs `docker swarm init` and pushes the join token to every other node.',
      }),
    ),
    advertise: Type.Optional(
      Type.String({ description: "The manager's cluster address (default: its first address)." }),
    ),
    join: Type.Optional(
      Type.Object(
        {
          manager: Type.String({ description: 'Address (host or host:port) of a manager of an existing swarm.' }),
          tokenFile: Type.String({
            description:
              'File (relative to the profile) holding the worker join token. ' +
              'The token is then a secret inside every image.',
          }),
        },
        { additionalProperties: false, description: 'Join an existing swarm instead of creating one.' },
      ),
    ),
    docker: Docker,
    networks: Type.Optional(
      Type.Array(
        Type.Object(
          { name: Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]*$' }) },
          { additionalProperties: false },
        ),
        { description: 'Attachable overlay networks the manager creates once every planned node is Ready.' },
      ),
    ),
    stacks: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_-]*$' }),
            compose: Type.String({ description: 'Compose file, relative to the profile.' }),
            env: Type.Optional(
              Type.Record(Type.String({ pattern: '^[A-Z_][A-Z0-9_]*$' }), Type.String(), {
                description: 'Variables for ${VAR} in the compose file.',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        { description: 'Stacks the manager deploys once every planned node is Ready.' },
      ),
    ),
    registry: Type.Optional(
      Type.Object(
        {
          storage: Type.String({
            pattern: '^/',
            hint: 'must be an absolute path such as /shared/registry',
            description:
              "Where the registry keeps its data on the manager, e.g. /shared/registry on the cluster's NFS export.",
          }),
          port: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 65535,
              default: 5000,
              description: 'Port on the manager (default 5000).',
            }),
          ),
          image: Type.Optional(
            Type.String({ default: 'registry:2', description: 'Registry image (default registry:2).' }),
          ),
        },
        {
          additionalProperties: false,
          description:
            'A private registry stack on the manager; ' +
            "every node's /etc/docker/daemon.json lists it under insecure-registries.",
        },
      ),
    ),
    portainer: Type.Optional(
      Type.Object(
        {
          image: Type.Optional(
            Type.String({ default: 'portainer/portainer-ce:lts', description: 'Portainer server image.' }),
          ),
          agentImage: Type.Optional(
            Type.String({ default: 'portainer/agent:lts', description: 'Portainer agent image (one per node).' }),
          ),
          port: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 65535,
              default: 9443,
              description: 'HTTPS port of the UI on the manager (default 9443).',
            }),
          ),
        },
        {
          additionalProperties: false,
          description: 'The Portainer management UI on the manager with its agent on every node.',
        },
      ),
    ),
    interval: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 3600,
        description: 'Seconds between manager rounds (retries, re-pushes, labels). Default 30.',
      }),
    ),
    deployAfter: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 86400,
        description:
          'Grace period in seconds: the manager deploys the stacks once every planned node is Ready, or this ' +
          'long after it initialised the swarm, naming the nodes still missing and inviting them on. Default 600.',
      }),
    ),
  },
  { additionalProperties: false, description: 'Docker Swarm formation at first boot.' },
);

const SshKey = Type.String({
  pattern:
    '^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\\.com) ' +
    '[A-Za-z0-9+/=]+( .*)?$',
  hint: 'must be one OpenSSH public key line such as "ssh-ed25519 AAAA… me@laptop"',
});

export const Admin = Type.Object(
  {
    user: Type.String({
      pattern: '^[a-z_][a-z0-9_-]{0,31}$',
      hint: 'must be a Linux user name: lower-case letters, digits, _ and -, starting with a letter',
      description: 'The admin login created at first boot (with sudo).',
    }),
    passwordHash: Type.Optional(
      Type.String({
        secret: true,
        pattern: '^\\$6\\$(rounds=\\d+\\$)?[^:$\\s]{1,16}\\$[./0-9A-Za-z]{86}$',
        hint:
          'must be a SHA-512 crypt hash ' +
          '($6$salt$…, as made by "openssl passwd -6"); ' +
          'or give passwordFile instead',
        description: 'SHA-512 crypt hash of the password ($6$…).',
      }),
    ),
    passwordFile: Type.Optional(
      Type.String({
        description:
          'File (relative to the profile) holding the plain password; ' +
          'swarmcard hashes it and keeps the hash in the secrets file. When it does not exist, ' +
          'the first build writes a random password into it (mode 0600).',
      }),
    ),
    authorizedKeys: Type.Optional(
      Type.Array(SshKey, {
        description: "Public keys that may log in as the admin (the admin's ~/.ssh/authorized_keys).",
      }),
    ),
    clusterKey: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          "Put the cluster SSH key in the admin's ~/.ssh on every node and authorize it: " +
          'every node can then SSH to every other. Every image then holds the private key.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'The admin user of every node (userconf.txt, or cloud-init user-data on trixie). SSH is enabled.',
  },
);

export const Nfs = Type.Object(
  {
    server: Type.String({ minLength: 1, description: 'The NAS: host name or IPv4 address.' }),
    mounts: Type.Array(
      Type.Object(
        {
          export: Type.String({
            pattern: '^/',
            hint: 'must be an absolute path on the server such as /export/cluster',
            description: 'Exported path on the server.',
          }),
          path: Type.String({
            pattern: '^/[^\\s]*$',
            hint: 'must be an absolute path without spaces such as /mnt/cluster',
            description: 'Mount point on every node.',
          }),
          options: Type.Optional(
            Type.String({
              pattern: '^[^\\s]+$',
              hint: 'must be comma-separated mount options without spaces',
              description: 'Mount options (default rw,nofail,_netdev,x-systemd.mount-timeout=60).',
            }),
          ),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    shared: Type.Optional(
      Type.String({
        pattern: '^/',
        description: 'Mount point (or a folder under one) that /shared links to on every node.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'NFS mounts from a NAS on every node (/etc/fstab, nfs4), with boot waiting for the network.',
  },
);

const nodeFields = {
  role: Type.Union(
    roles.map((r) => Type.Literal(r)),
    { description: 'host: the machine the others hang off (USB hub host); manager/worker: swarm roles.' },
  ),
  board: Type.Union(
    boards.map((b) => Type.Literal(b)),
    {
      description:
        'Raspberry Pi model; decides which image architecture can boot it (pi0/pi0w/pi1 need 32-bit armhf). ' +
        '"pc" means a laptop or PC host: no image, a host kit instead.',
    },
  ),
  base: Type.Optional(Base),
  interfaces: Type.Optional(Type.Array(Interface)),
  overlays: Type.Optional(Type.Array(OverlayUse)),
  labels: Type.Optional(
    Type.Record(Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]*$' }), Type.String(), {
      description: 'Swarm node labels (role and board are added by themselves), e.g. leds: "true".',
    }),
  ),
  gpio: Type.Optional(
    Type.Boolean({
      description:
        'Containers on this node drive GPIO: /dev/gpiomem belongs to the gpio group (mode 0660) ' +
        'and the node is labelled gpio=true.',
    }),
  ),
};

export const ExplicitNode = Type.Object(
  {
    index: Type.Integer({ minimum: 0, maximum: MAX_NODES, description: 'Node number: the NN in NN-hostname.img.' }),
    hostname: Hostname,
    ...nodeFields,
  },
  { additionalProperties: false, description: 'One named node.' },
);

/** What a build writes besides the node images: compressed copies, raw images, the release's URL. */
export const Output = Type.Object(
  {
    compress: Type.Optional(
      Type.Array(
        Type.String({
          pattern: '^(none|xz(:[0-9])?|zst(:([1-9]|1[0-9]))?)$',
          hint: 'must be xz, zst or none, optionally with a level: xz:0 … xz:9, zst:1 … zst:19',
          description:
            'Artifacts per node: xz (.img.xz), zst (.img.zst), none (the raw .img); FORMAT:LEVEL sets the ' +
            'level (defaults xz 6, zst 3). --compress replaces this list. Default: none.',
        }),
        { minItems: 1 },
      ),
    ),
    keepRaw: Type.Optional(
      Type.Boolean({ description: 'Keep the raw .img files beside the compressed ones (default false).' }),
    ),
    releaseUrl: Type.Optional(
      Type.String({
        pattern: '^https://[^\\s]+$',
        hint: 'must be an https:// URL, such as https://github.com/me/cluster/releases/download/v1/',
        description:
          'Where the release assets will be published: the Raspberry Pi Imager repository (imager.json) ' +
          'gives absolute URLs under it; relative file names otherwise.',
      }),
    ),
    icon: Type.Optional(
      Type.String({
        pattern: '^https://[^\\s]+$',
        hint: 'must be an https:// URL of a PNG or SVG icon',
        description: "The icon Raspberry Pi Imager shows for the cluster's images (default: the board's).",
      }),
    ),
  },
  { additionalProperties: false, description: 'Release artifacts of a build.' },
);

export const PatternGroup = Type.Object(
  {
    pattern: Type.String({
      minLength: 1,
      description: 'Host name template, e.g. otg{k}; k runs from first to first+count-1.',
    }),
    first: Type.Optional(
      Type.Integer({ minimum: 0, maximum: MAX_NODES, default: 1, description: 'Index of the first node (default 1).' }),
    ),
    count: Type.Integer({ minimum: 1, maximum: MAX_NODES, description: 'How many nodes; `--nodes N` overrides it.' }),
    ...nodeFields,
  },
  { additionalProperties: false, description: 'Numbered nodes made from a pattern.' },
);

export const Profile = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    cluster: Type.String({
      pattern: '^[a-z0-9][a-z0-9-]{0,62}$',
      hint: 'must be lower-case letters, digits and hyphens, such as my-cluster',
      description: 'Cluster name: the dist/<cluster>/ folder and the seed of every derived identifier.',
    }),
    description: Type.Optional(Type.String()),
    sourceDateEpoch: Type.Integer({
      minimum: EPOCH_MIN,
      maximum: EPOCH_MAX,
      hint: `must be a whole number of seconds from ${epochRange}, such as 1700000000`,
      description: 'Timestamp (seconds) written on every file; SOURCE_DATE_EPOCH overrides it.',
    }),
    base: Type.Optional(Base),
    admin: Type.Optional(Admin),
    etcHosts: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          "Every node's /etc/hosts lists every node with a static address. " +
          'Growing the cluster then changes every image.',
      }),
    ),
    nfs: Type.Optional(Nfs),
    swarm: Type.Optional(Swarm),
    output: Type.Optional(Output),
    nodes: Type.Array(Type.Union([ExplicitNode, PatternGroup]), { minItems: 1 }),
  },
  { additionalProperties: false, title: 'swarmcard cluster profile' },
);

/** The JSON Schema document written to profiles/schema.json. */
export function profileJsonSchema(): TSchema {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://swarmcard.invalid/profile.schema.json',
    ...JSON.parse(JSON.stringify(Profile)),
  };
}
