/**
 * Rendering (pure): a node's planned edits become the concrete edits its image takes, for the
 * Target its base image runs and with the secrets the build loaded. Abstract edits (network,
 * waitOnline, admin, secret) are replaced; a host name on a cloud-init image brings the cloud-init
 * files that keep it; every other edit passes through unchanged.
 */
import type { ImageEdit, PlannedEdit } from '../plan/edits.js';
import type { NodePlan } from '../plan/plan.js';
import type { SecretValues } from '../secrets/for-build.js';
import { renderCloudInit, renderNetwork, renderWaitOnline } from './network.js';
import type { Target } from './target.js';
import { renderAdmin } from './users.js';

export function renderForRelease(
  target: Target,
  node: Pick<NodePlan, 'index' | 'hostname' | 'edits'>,
  cluster: string,
  secrets: SecretValues = {},
): ImageEdit[] {
  return node.edits.flatMap((edit: PlannedEdit): ImageEdit[] => {
    switch (edit.op) {
      case 'network':
        return renderNetwork(target, edit.interfaces, { cluster, index: node.index }, secrets.wifi);
      case 'waitOnline':
        return renderWaitOnline(target);
      case 'admin': {
        const hash = secrets['admin-password'];
        if (hash === undefined) throw new Error('no value for admin-password');
        return renderAdmin(target, edit, hash);
      }
      case 'secret': {
        const content = secrets[edit.secret];
        if (content === undefined) throw new Error(`no value for ${edit.secret}`);
        const { origin, partition, path, mode } = edit;
        const ownDir: ImageEdit[] = path.startsWith('/root/.ssh/')
          ? [{ origin, op: 'mkdir', path: '/root/.ssh', mode: 0o700 }]
          : [];
        return [...ownDir, { origin, op: 'write', partition, path, content, mode, uid: 0, gid: 0 }];
      }
      case 'hostname':
        return target.cloudInit
          ? [edit, ...renderCloudInit({ cluster, index: node.index, hostname: node.hostname })]
          : [edit];
      default:
        return [edit];
    }
  });
}
