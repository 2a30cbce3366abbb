/**
 * The cluster as a Raspberry Pi Imager repository (`rpi-imager --repo imager.json`): the `os_list`
 * format of Imager 2.x, one cluster entry whose subitems are the node images. Pure: built from the
 * manifest, so the same build writes the same bytes. See docs/release.md for the fields.
 */
import type { Manifest, ManifestNode } from '../output/manifest.js';
import type { Board } from '../profile/types.js';

/** Imager's device families (its `devices` tags without the -32bit/-64bit suffix) and icons. */
const families: Record<Exclude<Board, 'pc'>, { family: string; icon: string }> = {
  pi0: { family: 'pi1', icon: 'RPi_Zero' },
  pi0w: { family: 'pi1', icon: 'RPi_Zero' },
  pi1: { family: 'pi1', icon: 'RPi_Zero' },
  pi2: { family: 'pi2', icon: 'RPi_3' },
  pi3: { family: 'pi3', icon: 'RPi_3' },
  'pi0-2w': { family: 'pi3', icon: 'RPi_Zero' },
  cm3: { family: 'pi3', icon: 'RPi_3' },
  pi4: { family: 'pi4', icon: 'RPi_4' },
  pi400: { family: 'pi4', icon: 'RPi_4' },
  cm4: { family: 'pi4', icon: 'RPi_4' },
  pi5: { family: 'pi5', icon: 'RPi_5' },
  pi500: { family: 'pi5', icon: 'RPi_5' },
  cm5: { family: 'pi5', icon: 'RPi_5' },
};

const boardNames: Record<string, string> = {
  pi0: 'Pi Zero',
  pi0w: 'Pi Zero W',
  pi1: 'Pi 1',
  pi2: 'Pi 2',
  pi3: 'Pi 3',
  'pi0-2w': 'Pi Zero 2 W',
  cm3: 'Compute Module 3',
  pi4: 'Pi 4',
  pi400: 'Pi 400',
  cm4: 'Compute Module 4',
  pi5: 'Pi 5',
  pi500: 'Pi 500',
  cm5: 'Compute Module 5',
};

/** The repository's name in the cluster folder. */
export const IMAGER_FILE = 'imager.json';

const ICONS = 'https://downloads.raspberrypi.com/imager/icons/';

/** The file a person downloads for a node: xz before zst before the raw image. */
function download(node: ManifestNode) {
  const order = ['xz', 'zst', 'raw'];
  const artifacts = node.artifacts.filter((a) => order.includes(a.kind));
  return artifacts.sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind))[0]!;
}

export interface ImagerOptions {
  releaseUrl?: string;
  icon?: string;
}

export function imagerRepository(manifest: Manifest, options: ImagerOptions): object {
  const date = new Date(manifest.sourceDateEpoch * 1000).toISOString().slice(0, 10);
  const nodes = [...manifest.nodes].sort((a, b) => a.index - b.index);
  const iconOf = (board: string) =>
    options.icon ?? `${ICONS}${families[board as keyof typeof families]?.icon ?? 'RPi_4'}.png`;
  const subitems = nodes.map((node) => {
    const file = download(node);
    const bits = node.arch === 'arm64' ? '64bit' : '32bit';
    const family = families[node.board as keyof typeof families]?.family ?? 'pi4';
    const number = String(node.index).padStart(2, '0');
    return {
      name: `${number} ${node.hostname} — ${node.role}, ${boardNames[node.board] ?? node.board}`,
      description:
        `Node ${node.index} of the ${manifest.cluster} cluster (${node.release} ${node.arch}), ` +
        'already configured: write it to the card as it is.',
      icon: iconOf(node.board),
      url: `${options.releaseUrl ?? ''}${file.file}`,
      extract_size: node.size,
      extract_sha256: node.sha256,
      image_download_size: file.size,
      image_download_sha256: file.sha256,
      release_date: date,
      devices: [`${family}-${bits}`],
      // The image already carries its node's identity: Imager must add no first-run settings.
      init_format: 'none',
    };
  });
  return {
    os_list: [
      {
        name: `${manifest.cluster} cluster (${nodes.length} node${nodes.length === 1 ? '' : 's'})`,
        description: `One image per node of the ${manifest.cluster} cluster, built by swarmcard.`,
        icon: iconOf(nodes[0]?.board ?? 'pi4'),
        subitems,
      },
    ],
  };
}
