/**
 * Architecture from an ELF header. Raspberry Pi OS armhf binaries are ELF32/EM_ARM (built for
 * ARMv6 + VFP so they boot a Pi 1/Zero); arm64 ones are ELF64/EM_AARCH64.
 */
export type Arch = 'armhf' | 'arm64' | 'amd64' | 'i386' | 'unknown';

const machines: Record<number, Arch> = { 40: 'armhf', 183: 'arm64', 62: 'amd64', 3: 'i386' };

export interface ElfInfo {
  arch: Arch;
  bits: 32 | 64;
  machine: number;
}

export function parseElf(header: Buffer): ElfInfo | undefined {
  if (header.length < 20 || header.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const bits = header[4] === 2 ? 64 : 32;
  const little = header[5] === 1;
  const machine = little ? header.readUInt16LE(18) : header.readUInt16BE(18);
  return { arch: machines[machine] ?? 'unknown', bits, machine };
}

/** Pi models an image of this architecture can boot. */
export const bootableModels: Record<Arch, string[]> = {
  armhf: ['pi1', 'pi0', 'pi0w', 'pi2', 'pi3', 'pi0-2w', 'pi4', 'pi400', 'pi5', 'pi500', 'cm3', 'cm4', 'cm5'],
  arm64: ['pi3', 'pi0-2w', 'pi4', 'pi400', 'pi5', 'pi500', 'cm3', 'cm4', 'cm5'],
  amd64: [],
  i386: [],
  unknown: [],
};
