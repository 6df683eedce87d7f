/**
 * Lossless JSON for Terraform states, and Go's `json.MarshalIndent` layout for writing them.
 *
 * A state can hold integers above 2^53 (and numbers written as `1.0` or `1e3`) that a plain
 * `JSON.parse` would silently round. Such numbers are kept as `JSON.rawJSON` values carrying their exact
 * source text, which `JSON.stringify` writes back verbatim; every other number is a plain JS number.
 */

/** A number whose source text a JS number cannot reproduce, kept verbatim. */
export type RawNumber = RawJSON;

export const isRawNumber = (value: unknown): value is RawNumber => JSON.isRawJSON(value);

/** Number tokens in structural position (after `:`, `[` or `,`); strings can only cause false alarms. */
const NUMBER_TOKEN = /[:[,]\s*(-?\d[\d.eE+-]*)/g;

/** True when some number in `text` would not survive `JSON.parse` + `JSON.stringify` unchanged. */
const hasFragileNumber = (text: string): boolean => {
  NUMBER_TOKEN.lastIndex = 0;
  for (let match = NUMBER_TOKEN.exec(text); match; match = NUMBER_TOKEN.exec(text)) {
    const token = match[1] as string;
    if (String(Number(token)) !== token) return true;
  }
  return false;
};

const keepSourceText = (_key: string, value: unknown, context: JSONReviverContext): unknown => {
  if (typeof value === 'number' && context.source !== undefined && String(value) !== context.source) {
    return JSON.rawJSON(context.source);
  }
  return value;
};

/**
 * Parses JSON without losing any number. The reviver that recovers source text costs about 5x a plain
 * parse, so it runs only when a scan finds a number that needs it (most states have none).
 */
export const parseLossless = (text: string): unknown =>
  hasFragileNumber(text) ? JSON.parse(text, keepSourceText) : JSON.parse(text);

const GO_ESCAPES: Readonly<Record<string, string>> = {
  '<': '\\u003c',
  '>': '\\u003e',
  '&': '\\u0026',
  '\u2028': '\\u2028',
  '\u2029': '\\u2029',
};
// These characters never appear in JSON structure, so outside strings there is nothing to confuse.
const GO_ESCAPED = /[<>&\u2028\u2029]/g;
const HAS_GO_ESCAPED = /[<>&\u2028\u2029]/;

/**
 * Go's string order: bytewise on UTF-8. UTF-16 code-unit order agrees except where an astral character
 * (a surrogate pair) meets U+E000..U+FFFF, which UTF-8 puts first.
 */
export const compareUtf8 = (a: string, b: string): number => {
  if (a === b) return 0;
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      const xAstral = x < 0xe000;
      if (xAstral !== y < 0xe000) return xAstral ? 1 : -1;
    }
    return x < y ? -1 : 1;
  }
  return a.length < b.length ? -1 : 1;
};

/**
 * JS objects enumerate array-index keys ("0" .. "4294967294") first and in numeric order, whatever
 * order the JSON held them in; go-cty writes object and map keys bytewise sorted (`"10"` before `"9"`,
 * `"-x"` before `"1"`). In the output such a key reads `"<digits>": `, which a string value cannot
 * produce (its inner quotes are escaped); unanchored, the scan is about as fast as the escape scan.
 */
const INDEX_KEY_LINE = /"(?:0|[1-9][0-9]{0,9})": /;
const isArrayIndex = (key: string): boolean =>
  /^(?:0|[1-9][0-9]{0,9})$/.test(key) && Number(key) < 4294967295;

/**
 * `JSON.stringify(value, null, 2)`, except that an object holding array-index keys is written with its
 * keys in Go's byte order. Only used when such keys exist, so the common case keeps the native speed.
 */
const indentSorted = (value: unknown, indent: string): string | undefined => {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (JSON.isRawJSON(value)) return value.rawJSON;
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const items = value.map((item) => `${inner}${indentSorted(item, inner) ?? 'null'}`);
    return `[\n${items.join(',\n')}\n${indent}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length > 0 && isArrayIndex(keys[0] as string)) keys.sort(compareUtf8);
  const members: string[] = [];
  for (const key of keys) {
    const text = indentSorted(record[key], inner);
    if (text !== undefined) members.push(`${inner}${JSON.stringify(key)}: ${text}`);
  }
  return members.length === 0 ? '{}' : `{\n${members.join(',\n')}\n${indent}}`;
};

/**
 * `json.MarshalIndent(v, "", "  ")` plus the trailing newline Terraform adds: two-space indent, keys in
 * the order the objects hold them, and Go's HTML-safe escaping of `<`, `>`, `&`, U+2028 and U+2029.
 * (JSON.stringify already matches Go >= 1.22 for `\b`, `\f`, `\n`, `\r`, `\t` and `\u00XX` control
 * characters.)
 */
export const stringifyGo = (value: unknown): string => {
  let text = JSON.stringify(value, null, 2);
  if (INDEX_KEY_LINE.test(text)) text = indentSorted(value, '') as string;
  return `${HAS_GO_ESCAPED.test(text) ? text.replace(GO_ESCAPED, (c) => GO_ESCAPES[c] as string) : text}\n`;
};
