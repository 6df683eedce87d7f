import { isUtf8 } from 'node:buffer';
import { tfStateError } from './errors';
import {
  compareUtf8,
  goKeyOrder,
  isRawNumber,
  parseLossless,
  parseLosslessUtf8,
  type RawNumber,
  stringifyGo,
  stringifyGoItem,
  stringifyGoMember,
} from './json';

/**
 * Terraform state format version 4 (Terraform 0.12 and later), as `internal/states/statefile/version4.go`
 * reads and writes it. Objects are kept exactly as parsed (unknown keys included), so writing back a
 * state that nobody changed reproduces a Terraform-written file byte for byte.
 */

export type JsonValue = null | boolean | number | string | RawNumber | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export type IndexKey = number | string;

export interface InstanceV4 {
  index_key?: IndexKey;
  status?: string;
  deposed?: string;
  schema_version: number;
  attributes?: JsonObject;
  attributes_flat?: Record<string, string>;
  sensitive_attributes?: JsonValue[];
  identity_schema_version?: number;
  identity?: JsonObject;
  private?: string;
  dependencies?: string[];
  create_before_destroy?: boolean;
}

export interface ResourceV4 {
  /** Module instance address; absent for the root module. */
  module?: string;
  mode: 'managed' | 'data';
  type: string;
  name: string;
  /** Written only by Terraform 0.12; tolerated and kept. */
  each?: string;
  provider: string;
  instances: InstanceV4[];
}

export interface OutputV4 {
  value: JsonValue;
  type: JsonValue;
  sensitive?: boolean;
}

export interface StateV4 {
  version: 4;
  terraform_version: string;
  serial: number | RawNumber;
  lineage: string;
  outputs: Record<string, OutputV4>;
  resources: ResourceV4[];
  check_results: JsonValue[] | null;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && !isRawNumber(value);

const BOM_REFUSAL = (source: string) =>
  `${source} starts with a byte-order mark: Terraform reads UTF-8 without BOM (re-save it as plain UTF-8)`;
const EMPTY_REFUSAL = (source: string) => `${source} is empty: there is no state to change`;

/** The parse, with its failure refused as "not a Terraform state". */
/**
 * Where JSON.parse stopped, without the text around it: V8 quotes a stretch of the source in its
 * message, and a state holds secrets (passwords, keys) that must not reach a log or a notification.
 */
const syntaxErrorPlace = (error: unknown): string => {
  const message = error instanceof Error ? error.message : '';
  const at = /position (\d+)(?: \(line (\d+) column (\d+)\))?/.exec(message);
  if (at?.[2] && at[3]) return `syntax error at line ${at[2]}, column ${at[3]}`;
  if (at?.[1]) return `syntax error at character ${Number(at[1]) + 1}`;
  if (/end of (JSON )?input/i.test(message)) return 'the text ends in the middle of a value';
  return 'syntax error';
};

const parseOrRefuse = (parse: () => unknown, source: string): unknown => {
  // Without it a big integer could not be kept exactly; refuse rather than risk rounding one.
  if (typeof JSON.rawJSON !== 'function') {
    throw tfStateError(
      'UnsupportedState',
      `this Node.js (${process.version}) cannot keep large integers exactly (no JSON.rawJSON): run Understudy on Node.js 22 or later`,
    );
  }
  try {
    return parse();
  } catch (error) {
    throw tfStateError(
      'UnsupportedState',
      `${source} could not be parsed as JSON (${syntaxErrorPlace(error)}); it is not a Terraform state`,
    );
  }
};

/** Refuses a parsed document that is not a format 4 state. */
const checkState = (parsed: unknown, source: string): StateV4 => {
  if (!isObject(parsed)) {
    throw tfStateError('UnsupportedState', `${source} is not a JSON object; it is not a Terraform state`);
  }
  if (!('version' in parsed)) {
    throw tfStateError('UnsupportedState', `${source} does not have a "version" attribute`);
  }
  if (parsed.version !== 4) {
    throw tfStateError(
      'UnsupportedState',
      `${source} uses state format version ${JSON.stringify(parsed.version)}; only format 4 (Terraform 0.12 and later) is supported: run "terraform init" and "terraform apply -refresh-only" with a current Terraform to upgrade it`,
    );
  }
  if (!Array.isArray(parsed.resources) || !isObject(parsed.outputs)) {
    throw tfStateError(
      'UnsupportedState',
      `${source} lacks the "resources" array or "outputs" object of format 4`,
    );
  }
  for (const resource of parsed.resources as unknown[]) {
    if (!isObject(resource) || !Array.isArray(resource.instances)) {
      throw tfStateError('UnsupportedState', `${source} holds a resource without an "instances" array`);
    }
  }
  return parsed as unknown as StateV4;
};

/**
 * Parses a state file's text. Refuses (writing nothing, naming the fix) anything Terraform 1.x would
 * not read as format 4: a byte-order mark, invalid JSON, a missing or other `version`.
 */
export const readState = (text: string, source = 'the state'): StateV4 => {
  if (text.charCodeAt(0) === 0xfeff) throw tfStateError('UnsupportedState', BOM_REFUSAL(source));
  if (text.trim() === '') throw tfStateError('UnsupportedState', EMPTY_REFUSAL(source));
  return checkState(
    parseOrRefuse(() => parseLossless(text), source),
    source,
  );
};

const JSON_WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

/** Whether the text of these (valid UTF-8) bytes is all whitespace, as `String.prototype.trim` sees it. */
const isBlank = (bytes: Uint8Array): boolean => {
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] as number;
    if (JSON_WHITESPACE.has(byte)) continue;
    // Only ASCII is decided here; a non-ASCII byte may start Unicode whitespace (NBSP, U+2028, ...).
    return byte >= 0x80 && new TextDecoder().decode(bytes).trim() === '';
  }
  return true;
};

/**
 * `readState` of a file's bytes, with the same refusals plus one for bytes that are not UTF-8 (a
 * UTF-16 file written by a shell redirect is a known trap). For large states: the text is never held
 * twice (see parseLosslessUtf8), so a 30 MB state is read in a fraction of the memory.
 */
export const readStateUtf8 = (bytes: Uint8Array, source = 'the state'): StateV4 => {
  if (!isUtf8(bytes)) throw tfStateError('UnsupportedState', `${source} is not UTF-8 text`);
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw tfStateError('UnsupportedState', BOM_REFUSAL(source));
  }
  if (isBlank(bytes)) throw tfStateError('UnsupportedState', EMPTY_REFUSAL(source));
  return checkState(
    parseOrRefuse(() => parseLosslessUtf8(bytes), source),
    source,
  );
};

/** `serial + 1`, exact even for a serial kept as raw text (above 2^53). */
export const nextSerial = (serial: StateV4['serial']): StateV4['serial'] => {
  if (isRawNumber(serial)) return JSON.rawJSON((BigInt(serial.rawJSON) + 1n).toString());
  const next = serial + 1;
  return Number.isSafeInteger(next) ? next : JSON.rawJSON((BigInt(serial) + 1n).toString());
};

export const serialText = (serial: StateV4['serial']): string =>
  isRawNumber(serial) ? serial.rawJSON : String(serial);

/** Key orders of Go's structs (`stateV4`, `resourceStateV4`, `instanceObjectStateV4`, `outputStateV4`). */
const STATE_KEYS = [
  'version',
  'terraform_version',
  'serial',
  'lineage',
  'outputs',
  'resources',
  'check_results',
];
const RESOURCE_KEYS = ['module', 'mode', 'type', 'name', 'each', 'provider', 'instances'];
const INSTANCE_KEYS = [
  'index_key',
  'status',
  'deposed',
  'schema_version',
  'attributes',
  'attributes_flat',
  'sensitive_attributes',
  'identity_schema_version',
  'identity',
  'private',
  'dependencies',
  'create_before_destroy',
];
const OUTPUT_KEYS = ['value', 'type', 'sensitive'];

/**
 * The object with its known keys in struct order; keys Terraform does not know are kept after them
 * rather than dropped, since this tool must never lose data. Absent stays absent.
 */
const ordered = <T extends object>(object: T, keys: readonly string[]): T => {
  const source = object as Record<string, unknown>;
  // A null prototype, so that a key named `__proto__` is stored as data rather than lost.
  const out: Record<string, unknown> = Object.create(null);
  for (const key of keys) if (source[key] !== undefined) out[key] = source[key];
  for (const key of Object.keys(source))
    if (!(key in out) && source[key] !== undefined) out[key] = source[key];
  return out as T;
};

const sortedKeys = <V>(record: Record<string, V>): Record<string, V> => {
  const out: Record<string, V> = Object.create(null);
  for (const key of Object.keys(record).sort(compareStrings)) out[key] = record[key] as V;
  return out;
};

/** Go compares strings bytewise (UTF-8); `for_each` keys may be any Unicode. */
export const compareStrings = compareUtf8;

const MODE_ORDER = { data: 0, managed: 1 } as const;

/** `normalize()`: resources by module, mode (data first), type, name. Stable. */
export const compareResources = (a: ResourceV4, b: ResourceV4): number =>
  compareStrings(a.module ?? '', b.module ?? '') ||
  (MODE_ORDER[a.mode] ?? 2) - (MODE_ORDER[b.mode] ?? 2) ||
  compareStrings(a.type, b.type) ||
  compareStrings(a.name, b.name);

const keyRank = (key: IndexKey | undefined): number =>
  key === undefined ? 0 : typeof key === 'number' ? 1 : 2;

/** Instances: no key, then int keys ascending, then string keys; the current object before deposed ones. */
export const compareInstances = (a: InstanceV4, b: InstanceV4): number => {
  const rank = keyRank(a.index_key) - keyRank(b.index_key);
  if (rank !== 0) return rank;
  if (typeof a.index_key === 'number' && typeof b.index_key === 'number' && a.index_key !== b.index_key) {
    return a.index_key - b.index_key;
  }
  if (typeof a.index_key === 'string' && typeof b.index_key === 'string' && a.index_key !== b.index_key) {
    return compareStrings(a.index_key, b.index_key);
  }
  return compareStrings(a.deposed ?? '', b.deposed ?? '');
};

/** A resource with its instances sorted, all in struct key order: a copy, the input is not changed. */
const orderedResource = (resource: ResourceV4): ResourceV4 =>
  ordered(
    {
      ...resource,
      instances: [...resource.instances]
        .sort(compareInstances)
        .map((instance) => ordered(instance, INSTANCE_KEYS)),
    },
    RESOURCE_KEYS,
  );

/** The top-level object as written, but with `resources` unsorted (see writeState). */
const orderedState = (state: StateV4, resources: ResourceV4[]): StateV4 => {
  const outputs = sortedKeys(state.outputs);
  for (const name of Object.keys(outputs)) outputs[name] = ordered(outputs[name] as OutputV4, OUTPUT_KEYS);
  return ordered({ ...state, outputs, resources, check_results: state.check_results ?? null }, STATE_KEYS);
};

/**
 * The file Terraform would write for this state (`writeStateV4`): resources and instances sorted, struct
 * key order, outputs by name, two-space indent, Go escaping, trailing newline. `attributes`, `identity`
 * and output values are written as they are held: parsed from Terraform's own output they are already
 * in go-cty's sorted order, and an edit replaces values in place.
 */
export const writeState = (state: StateV4): string =>
  stringifyGo(orderedState(state, [...state.resources].sort(compareResources).map(orderedResource)));

/**
 * `writeState(state)` in pieces, resource by resource, for writing a large state straight to a file:
 * the chunks joined are the same text byte for byte, but neither that text nor a sorted copy of the whole
 * state is ever held (a 30 MB state is 60 MB of UTF-16 text).
 */
export const writeStateTo = (state: StateV4, write: (chunk: string) => void): void => {
  const top = orderedState(state, state.resources) as unknown as Record<string, unknown>;
  const keys = goKeyOrder(top);
  if (keys.length === 0) {
    write('{}\n');
    return;
  }
  keys.forEach((key, index) => {
    const lead = index === 0 ? '{\n' : ',\n';
    const value = top[key];
    if (key !== 'resources' || !Array.isArray(value) || value.length === 0) {
      write(`${lead}${stringifyGoMember(key, value)}`);
      return;
    }
    write(`${lead}  "resources": [\n`);
    const resources = [...(value as ResourceV4[])].sort(compareResources);
    resources.forEach((resource, i) => {
      write(`${i === 0 ? '' : ',\n'}${stringifyGoItem(orderedResource(resource))}`);
    });
    write('\n  ]');
  });
  write('\n}\n');
};
