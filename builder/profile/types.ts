/**
 * The profile's types, each stage's output: the data as written (static types of the schema), the
 * nodes as expanded from explicit nodes and pattern groups, and the profile as loaded (overlays
 * bound, referenced files resolved).
 */
import type { Static } from '@sinclair/typebox';
import type { Overlay } from '../overlay/manifest.js';
import type { Admin, Base, boards, Interface, Nfs, Output, Profile, roles, Swarm } from './schema.js';

export type ProfileData = Static<typeof Profile>;
export type InterfaceData = Static<typeof Interface>;
export type BaseData = Static<typeof Base>;
export type Role = (typeof roles)[number];
export type Board = (typeof boards)[number];
export type SwarmData = Static<typeof Swarm>;
export type AdminData = Static<typeof Admin>;
export type NfsData = Static<typeof Nfs>;
export type OutputData = Static<typeof Output>;

/** Where a field is in the profile: `['nodes', 1, 'interfaces', 0, 'address']`. */
export type FieldPath = (string | number)[];

export interface Problem {
  path: FieldPath;
  message: string;
}

/** One overlay as a node uses it; after binding, `params` holds every parameter (defaults filled in). */
export interface OverlayBinding {
  id: string;
  params: Record<string, unknown>;
}

export interface NodeSpec {
  index: number;
  hostname: string;
  role: Role;
  board: Board;
  base?: BaseData;
  interfaces: InterfaceData[];
  overlays: OverlayBinding[];
  /** Where the node (or its pattern group) is in the YAML, for error messages. */
  source: FieldPath;
  fromPattern: boolean;
  labels: Record<string, string>;
  gpio: boolean;
}

export interface LoadedAdmin extends Omit<AdminData, 'passwordFile'> {
  /** Absolute path of the plain password file (read and hashed at build). */
  passwordFile?: string;
}

export interface LoadedSwarm extends Omit<SwarmData, 'stacks' | 'join'> {
  stacks: { name: string; compose: string; env: Record<string, string> }[];
  /** Join mode: the existing manager and the absolute path of the token file (read at build). */
  join?: { manager: string; tokenFile: string };
}

export interface LoadedProfile {
  file: string;
  cluster: string;
  description?: string;
  sourceDateEpoch: number;
  nodes: NodeSpec[];
  overlays: Map<string, Overlay>;
  swarm?: LoadedSwarm;
  admin?: LoadedAdmin;
  etcHosts: boolean;
  nfs?: NfsData;
  output?: OutputData;
}

/** What the command line overrides in a profile. */
export interface LoadOptions {
  /** `--nodes N`: the count of the profile's pattern group. */
  nodes?: number;
  /** `--base IMAGE`: every imaged node's base image (e.g. a real Raspberry Pi OS Lite download). */
  base?: string;
}
