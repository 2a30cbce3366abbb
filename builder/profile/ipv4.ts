/** IPv4 addresses and prefixes as integers: parse, contain, overlap. Pure. */
export interface Cidr {
  address: number;
  prefix: number;
  /** The network address (address with host bits cleared). */
  network: number;
}

export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function parseCidr(text: string): Cidr | undefined {
  const [ip, prefixText, extra] = text.split('/');
  if (extra !== undefined || ip === undefined || prefixText === undefined || !/^\d{1,2}$/.test(prefixText))
    return undefined;
  const address = parseIpv4(ip);
  const prefix = Number(prefixText);
  if (address === undefined || prefix > 32) return undefined;
  return { address, prefix, network: networkOf(address, prefix) };
}

export function networkOf(address: number, prefix: number): number {
  const size = 2 ** (32 - prefix);
  return Math.floor(address / size) * size;
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

export function formatNetwork(c: Cidr): string {
  return `${formatIpv4(c.network)}/${c.prefix}`;
}

export function contains(c: Cidr, address: number): boolean {
  return networkOf(address, c.prefix) === c.network;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const prefix = Math.min(a.prefix, b.prefix);
  return networkOf(a.network, prefix) === networkOf(b.network, prefix);
}
