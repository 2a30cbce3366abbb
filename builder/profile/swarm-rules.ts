/** Rules for the swarm section: who inits, who joins, and whether Docker can run on each board. */
import { closest } from '../text/closest.js';
import { parseIpv4 } from './ipv4.js';
import { hostnamePattern } from './rules.js';
import type { NodeSpec, Problem, SwarmData } from './types.js';

/** Docker Engine 29 dropped ARMv6: no official Docker ≥ 29 for Pi 1, Zero, Zero W (docs/raspios.md #7). */
export const armv6Boards = new Set(['pi0', 'pi0w', 'pi1']);

export function checkSwarm(swarm: SwarmData, nodes: NodeSpec[]): Problem[] {
  const problems: Problem[] = [];
  if (swarm.join && swarm.manager)
    problems.push({
      path: ['swarm', 'join'],
      message: 'a profile either creates a swarm (manager) or joins an existing one (join), not both; remove one',
    });
  if (!swarm.join && !swarm.manager)
    problems.push({
      path: ['swarm'],
      message:
        'manager is missing: name the node that runs docker swarm init, ' +
        'or give join: { manager, tokenFile } to join an existing swarm',
    });
  if (swarm.manager) {
    const manager = nodes.find((n) => n.hostname === swarm.manager);
    // Only names a node may have are offered (an invalid one has a problem of its own).
    const names = nodes.map((n) => n.hostname).filter((name) => hostnamePattern.test(name));
    const guess = closest(swarm.manager, names);
    if (!manager)
      problems.push({
        path: ['swarm', 'manager'],
        message: guess
          ? `no node is called ${swarm.manager}; did you mean ${guess}?`
          : `no node is called ${swarm.manager}; ` +
            (names.length > 0
              ? `use one of ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}`
              : 'give one of the nodes a valid host name and name it here'),
      });
    else if (manager.role === 'worker')
      problems.push({
        path: ['swarm', 'manager'],
        message: `${swarm.manager} has role worker; the swarm manager must be a node with role manager or host`,
      });
    else if (manager.board === 'pc')
      problems.push({
        path: ['swarm', 'manager'],
        message: `${swarm.manager} is a pc without an image; the manager must be a Raspberry Pi node`,
      });
  }
  if (swarm.join && (swarm.registry || swarm.portainer))
    problems.push({
      path: ['swarm', swarm.registry ? 'registry' : 'portainer'],
      message:
        'runs on the manager of a swarm swarmcard creates; in join mode deploy it from the existing swarm instead, ' +
        'or remove it',
    });
  if (swarm.advertise !== undefined && parseIpv4(swarm.advertise) === undefined)
    problems.push({ path: ['swarm', 'advertise'], message: `"${swarm.advertise}" is not an IPv4 address` });
  if (swarm.join && !/^[\w.-]+(:\d{1,5})?$/.test(swarm.join.manager))
    problems.push({
      path: ['swarm', 'join', 'manager'],
      message: `"${swarm.join.manager}" is not an address such as 192.168.1.10 or 192.168.1.10:2377`,
    });
  for (const [j, stack] of (swarm.stacks ?? []).entries()) {
    if ((stack.name === 'registry' && swarm.registry) || (stack.name === 'portainer' && swarm.portainer)) {
      problems.push({
        path: ['swarm', 'stacks', j, 'name'],
        message: `${stack.name} is the name of the stack swarm.${stack.name} makes; name this stack otherwise`,
      });
    }
  }
  const { method, version } = swarm.docker;
  const major = version === undefined ? undefined : Number(version.split('.')[0]);
  const armv6 = nodes.filter((n) => armv6Boards.has(n.board));
  if (armv6.length > 0 && method === 'convenience' && (major === undefined || major >= 29)) {
    problems.push({
      path: ['swarm', 'docker', version === undefined ? 'method' : 'version'],
      message:
        `${armv6[0]!.hostname} is a ${armv6[0]!.board} (ARMv6), ` +
        `which Docker ${version ?? 'latest'} no longer supports (29 and later need ARMv7); use method: apt, ` +
        'or the convenience script with version: "28.5"',
    });
  }
  return problems;
}
