import { tfStateError } from './errors';
import type { IndexKey } from './state';

/**
 * Terraform addresses as `terraform state` commands take them (`addrs.ParseTargetStr`) and as the state
 * file spells them (`ModuleInstance.String()`, `InstanceKey.String()` in `internal/addrs`).
 */

export interface ModuleStep {
  readonly name: string;
  readonly key?: IndexKey;
}

export interface ModuleAddress {
  readonly kind: 'module';
  readonly module: readonly ModuleStep[];
}

export interface ResourceAddress {
  readonly kind: 'resource';
  readonly module: readonly ModuleStep[];
  readonly mode: 'managed' | 'data';
  readonly type: string;
  readonly name: string;
  readonly key?: IndexKey;
}

export type Address = ModuleAddress | ResourceAddress;

/** HCL identifiers: a letter or `_`, then letters, digits, `_` and `-`. */
const IDENTIFIER = /[\p{L}_][\p{L}\p{M}\p{N}_-]*/uy;

interface Segment {
  readonly name: string;
  readonly key?: IndexKey;
  /** Offset of the segment in the text, for messages. */
  readonly at: number;
}

const invalid = (text: string, problem: string) =>
  tfStateError('InvalidAddress', `Invalid address ${JSON.stringify(text)}: ${problem}`);

const hex = (text: string, whole: string, at: number, length: number): number => {
  const digits = text.slice(at, at + length);
  if (digits.length !== length || !/^[0-9a-fA-F]+$/.test(digits)) {
    throw invalid(whole, `a \\u or \\U escape at character ${at - 1} needs ${length} hex digits`);
  }
  const code = Number.parseInt(digits, 16);
  if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
    throw invalid(whole, `the escape at character ${at - 1} is not a Unicode scalar value`);
  }
  return code;
};

/**
 * An HCL quoted string starting at `text[start] === '"'`: backslash escapes, and `$${` / `%%{` for a
 * literal `${` / `%{`. A bare `${` or `%{` would be a template, which an address cannot hold.
 */
const readQuoted = (text: string, start: number): { value: string; end: number } => {
  let value = '';
  let i = start + 1;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === '"') return { value, end: i + 1 };
    if (c === '\\') {
      const e = text[i + 1];
      switch (e) {
        case 'n':
          value += '\n';
          i += 2;
          break;
        case 'r':
          value += '\r';
          i += 2;
          break;
        case 't':
          value += '\t';
          i += 2;
          break;
        case '"':
          value += '"';
          i += 2;
          break;
        case '\\':
          value += '\\';
          i += 2;
          break;
        case 'u':
          value += String.fromCodePoint(hex(text, text, i + 2, 4));
          i += 6;
          break;
        case 'U':
          value += String.fromCodePoint(hex(text, text, i + 2, 8));
          i += 10;
          break;
        default:
          throw invalid(text, `unsupported escape sequence "\\${e ?? ''}" at character ${i}`);
      }
      continue;
    }
    if ((c === '$' || c === '%') && text[i + 1] === c && text[i + 2] === '{') {
      value += `${c}{`;
      i += 3;
      continue;
    }
    if ((c === '$' || c === '%') && text[i + 1] === '{') {
      throw invalid(
        text,
        `the key holds a template sequence "${c}{" at character ${i} (write "${c}${c}{" for a literal one)`,
      );
    }
    if (c === '\n') throw invalid(text, `the quoted key starting at character ${start} has a raw newline`);
    value += c;
    i += 1;
  }
  throw invalid(text, `the quoted key starting at character ${start} is not closed`);
};

/** `[0]` or `["x"]` at `text[start] === '['`. */
const readKey = (text: string, start: number): { key: IndexKey; end: number } => {
  let key: IndexKey;
  let i = start + 1;
  if (text[i] === '"') {
    const quoted = readQuoted(text, i);
    key = quoted.value;
    i = quoted.end;
  } else {
    const digits = /[0-9]+/y;
    digits.lastIndex = i;
    const match = digits.exec(text);
    if (!match) {
      throw invalid(text, `the index at character ${start} must be a whole number or a quoted string`);
    }
    key = Number(match[0]);
    if (!Number.isSafeInteger(key)) throw invalid(text, `the index ${match[0]} is too large`);
    i += match[0].length;
  }
  if (text[i] !== ']') throw invalid(text, `expected "]" at character ${i} to close the index`);
  return { key, end: i + 1 };
};

/** Splits `a.b[0].c["x"]` into segments; every segment is an identifier with an optional index. */
const segmentsOf = (text: string): Segment[] => {
  if (text === '') throw invalid(text, 'the address is empty');
  const segments: Segment[] = [];
  let i = 0;
  for (;;) {
    IDENTIFIER.lastIndex = i;
    const match = IDENTIFIER.exec(text);
    if (!match) {
      const found = i < text.length ? `"${text[i]}"` : 'the end';
      throw invalid(text, `expected a name at character ${i}, found ${found}`);
    }
    const at = i;
    i += match[0].length;
    if (text[i] === '[') {
      const { key, end } = readKey(text, i);
      segments.push({ name: match[0], key, at });
      i = end;
    } else {
      segments.push({ name: match[0], at });
    }
    if (i === text.length) return segments;
    if (text[i] !== '.') throw invalid(text, `unexpected "${text[i]}" at character ${i}`);
    i += 1;
  }
};

const refuseKey = (text: string, segment: Segment, what: string) => {
  if (segment.key !== undefined) {
    throw invalid(text, `${what} "${segment.name}" at character ${segment.at} cannot take an index`);
  }
};

/** Reads leading `module.<name>[key]` pairs; returns the steps and where the rest begins. */
const moduleSteps = (text: string, segments: readonly Segment[]): { steps: ModuleStep[]; rest: number } => {
  const steps: ModuleStep[] = [];
  let i = 0;
  while (i < segments.length && (segments[i] as Segment).name === 'module') {
    const keyword = segments[i] as Segment;
    refuseKey(text, keyword, 'the keyword');
    const call = segments[i + 1];
    if (!call) throw invalid(text, `"module." at character ${keyword.at} must be followed by a module name`);
    steps.push(call.key === undefined ? { name: call.name } : { name: call.name, key: call.key });
    i += 2;
  }
  return { steps, rest: i };
};

export function parseAddress(text: string): Address {
  const segments = segmentsOf(text);
  const { steps, rest } = moduleSteps(text, segments);
  const tail = segments.slice(rest);
  if (tail.length === 0) return { kind: 'module', module: steps };
  let mode: 'managed' | 'data' = 'managed';
  let parts = tail;
  if ((tail[0] as Segment).name === 'data') {
    refuseKey(text, tail[0] as Segment, 'the keyword');
    mode = 'data';
    parts = tail.slice(1);
  }
  const [type, name, extra] = parts;
  if (!type || !name) {
    throw invalid(
      text,
      `a resource address needs "${mode === 'data' ? 'data.' : ''}<type>.<name>" after the module path`,
    );
  }
  if (extra)
    throw invalid(text, `unexpected "${extra.name}" at character ${extra.at} after the resource name`);
  refuseKey(text, type, 'the resource type');
  const base = { kind: 'resource' as const, module: steps, mode, type: type.name, name: name.name };
  return name.key === undefined ? base : { ...base, key: name.key };
}

export function parseResourceAddress(text: string): ResourceAddress {
  const address = parseAddress(text);
  if (address.kind !== 'resource')
    throw invalid(text, 'this is a module address; a resource address is needed');
  return address;
}

/** The state's `module` field: `''` or absent for the root module. */
export function parseModulePath(text: string | undefined): ModuleStep[] {
  if (text === undefined || text === '') return [];
  const segments = segmentsOf(text);
  const { steps, rest } = moduleSteps(text, segments);
  if (rest !== segments.length) {
    const stray = segments[rest] as Segment;
    throw invalid(
      text,
      `a module path holds only "module.<name>" steps; found "${stray.name}" at character ${stray.at}`,
    );
  }
  return steps;
}

/** Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space. */
const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

/** `toHCLQuotedString` of `internal/addrs/instance_key.go`. */
const quoteHcl = (value: string): string => {
  let out = '"';
  let i = 0;
  for (const c of value) {
    switch (c) {
      case '\n':
        out += '\\n';
        break;
      case '\r':
        out += '\\r';
        break;
      case '\t':
        out += '\\t';
        break;
      case '"':
        out += '\\"';
        break;
      case '\\':
        out += '\\\\';
        break;
      case '$':
      case '%':
        out += value[i + 1] === '{' ? c + c : c;
        break;
      default:
        if (PRINTABLE.test(c)) {
          out += c;
        } else {
          const code = c.codePointAt(0) as number;
          out +=
            code < 0x10000
              ? `\\u${code.toString(16).padStart(4, '0')}`
              : `\\U${code.toString(16).padStart(8, '0')}`;
        }
    }
    i += c.length;
  }
  return `${out}"`;
};

export function formatIndexKey(key: IndexKey): string {
  return typeof key === 'number' ? `[${key}]` : `[${quoteHcl(key)}]`;
}

export function formatModulePath(steps: readonly ModuleStep[]): string {
  let out = '';
  for (const step of steps) {
    out += `${out === '' ? '' : '.'}module.${step.name}${step.key === undefined ? '' : formatIndexKey(step.key)}`;
  }
  return out;
}

export function formatAddress(address: Address): string {
  const module = formatModulePath(address.module);
  if (address.kind === 'module') return module;
  const resource = `${address.mode === 'data' ? 'data.' : ''}${address.type}.${address.name}${
    address.key === undefined ? '' : formatIndexKey(address.key)
  }`;
  return module === '' ? resource : `${module}.${resource}`;
}
