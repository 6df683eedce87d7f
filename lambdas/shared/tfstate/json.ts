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

const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;

/** A token that is a JSON number (and not merely made of number characters, like `1.0.0` or `01`). */
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/** A quote is escaped when an odd run of backslashes precedes it. */
const isEscapedQuote = (view: string, quote: number): boolean => {
  let start = quote - 1;
  while (view.charCodeAt(start) === BACKSLASH) start -= 1;
  return ((quote - 1 - start) & 1) === 1;
};

/**
 * `[start, end)` offsets of every number token outside strings that `String(Number(token))` does not
 * reproduce. It reads only ASCII (quotes, backslashes, number characters), so it works on the text
 * itself and equally on a latin1 view of the text's UTF-8 bytes (where offsets are byte offsets): every
 * byte of a multi-byte UTF-8 sequence is 0x80 or above and never reads as one of those.
 * Strings are skipped quote to quote with `indexOf`, which is what makes this faster than a regex scan.
 */
const findFragileNumbers = (view: string): number[] => {
  const spans: number[] = [];
  const length = view.length;
  let from = 0;
  for (;;) {
    const open = view.indexOf('"', from);
    const gapEnd = open === -1 ? length : open;
    for (let i = from; i < gapEnd; i++) {
      const first = view.charCodeAt(i);
      if (first !== MINUS && (first < ZERO || first > NINE)) continue;
      let end = i + 1;
      // Digits only, so far: a short all-digit integer is always exact and needs no further look.
      let plain = first !== MINUS;
      for (; end < gapEnd; end++) {
        const c = view.charCodeAt(end);
        if (c >= ZERO && c <= NINE) continue;
        if (c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === MINUS) {
          plain = false;
          continue;
        }
        break;
      }
      if (!plain || end - i >= 16) {
        const token = view.slice(i, end);
        if (String(Number(token)) !== token && JSON_NUMBER.test(token)) spans.push(i, end);
      }
      i = end;
    }
    if (open === -1) return spans;
    let close = view.indexOf('"', open + 1);
    while (close !== -1 && isEscapedQuote(view, close)) close = view.indexOf('"', close + 1);
    // An unterminated string: nothing after it is a number, and JSON.parse will say what is wrong.
    if (close === -1) return spans;
    from = close + 1;
  }
};

const keepSourceText = (_key: string, value: unknown, context: JSONReviverContext): unknown => {
  if (typeof value === 'number' && context.source !== undefined && String(value) !== context.source) {
    return JSON.rawJSON(context.source);
  }
  return value;
};

/**
 * Fragile numbers are parsed as marker strings: U+0001 and the token's index. JSON text can only write
 * U+0001 as this escape, so when the text does not contain it no genuine string can be a marker.
 */
const MARKER_ESCAPE = '\\u0001';
const MARKER = 1;
const markerText = (index: number): string => `"${MARKER_ESCAPE}${index}"`;

const setMember = (node: Record<string, unknown>, key: string, value: unknown): void => {
  // Assigning to `__proto__` would set the prototype; JSON.parse made it an own data property.
  if (key === '__proto__')
    Object.defineProperty(node, key, { value, writable: true, enumerable: true, configurable: true });
  else node[key] = value;
};

/** Turns the markers back into the numbers' source text; stops as soon as all are found. */
const restoreMarkers = (root: unknown, tokens: readonly string[]): unknown => {
  const raw = (value: unknown): RawNumber | undefined =>
    typeof value === 'string' && value.charCodeAt(0) === MARKER
      ? JSON.rawJSON(tokens[Number(value.slice(1))] as string)
      : undefined;
  let left = tokens.length;
  const visit = (node: object): void => {
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length && left > 0; i++) {
        const item: unknown = node[i];
        if (typeof item === 'object' && item !== null) visit(item);
        else {
          const number = raw(item);
          if (number !== undefined) {
            node[i] = number;
            left -= 1;
          }
        }
      }
      return;
    }
    const record = node as Record<string, unknown>;
    for (const key in record) {
      const value = record[key];
      if (typeof value === 'object' && value !== null) visit(value);
      else {
        const number = raw(value);
        if (number !== undefined) {
          setMember(record, key, number);
          left -= 1;
        }
      }
      if (left === 0) return;
    }
  };
  const number = raw(root);
  if (number !== undefined) return number;
  if (typeof root === 'object' && root !== null) visit(root);
  return root;
};

const withMarkers = (text: string, spans: readonly number[]): string => {
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < spans.length; i += 2) {
    parts.push(text.slice(from, spans[i]), markerText(i / 2));
    from = spans[i + 1] as number;
  }
  parts.push(text.slice(from));
  return parts.join('');
};

const tokensOf = (view: string, spans: readonly number[]): string[] => {
  const tokens: string[] = [];
  for (let i = 0; i < spans.length; i += 2) tokens.push(view.slice(spans[i], spans[i + 1]));
  return tokens;
};

/**
 * Parses JSON without losing any number. A reviver that recovers source text costs about 5x a plain
 * parse; instead, the few numbers that need it are swapped for marker strings, the text is parsed
 * plainly, and the markers are turned back into raw numbers.
 */
export const parseLossless = (text: string): unknown => {
  const spans = findFragileNumbers(text);
  if (spans.length === 0) return JSON.parse(text);
  if (text.includes(MARKER_ESCAPE)) return JSON.parse(text, keepSourceText);
  let parsed: unknown;
  try {
    parsed = JSON.parse(withMarkers(text, spans));
  } catch {
    // Report the error (and its position) in the text as given.
    return JSON.parse(text, keepSourceText);
  }
  return restoreMarkers(parsed, tokensOf(text, spans));
};

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * `parseLossless` of UTF-8 bytes (a BOM is kept as U+FEFF; invalid UTF-8 throws a TypeError). A 30 MB
 * state decodes to 60 MB of UTF-16 when it holds any non-ASCII character; the markers are put into the
 * bytes rather than into the text, so there is never a second copy of the text, and the marked bytes are
 * let go before the parse.
 */
export const parseLosslessUtf8 = (bytes: Uint8Array): unknown => {
  let view: string | undefined = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(
    'latin1',
  );
  const spans = findFragileNumbers(view);
  if (spans.length === 0 || view.includes(MARKER_ESCAPE)) {
    view = undefined;
    const text = UTF8.decode(bytes);
    return spans.length === 0 ? JSON.parse(text) : JSON.parse(text, keepSourceText);
  }
  const tokens = tokensOf(view, spans);
  view = undefined;
  const parts: Uint8Array[] = [];
  let from = 0;
  for (let i = 0; i < spans.length; i += 2) {
    parts.push(bytes.subarray(from, spans[i]), Buffer.from(markerText(i / 2), 'latin1'));
    from = spans[i + 1] as number;
  }
  parts.push(bytes.subarray(from));
  let marked: Buffer | undefined = Buffer.concat(parts);
  parts.length = 0;
  let text: string | undefined = UTF8.decode(marked);
  marked = undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    text = undefined;
    return JSON.parse(UTF8.decode(bytes), keepSourceText);
  }
  text = undefined;
  return restoreMarkers(parsed, tokens);
};

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
 * produce (its inner quotes are escaped).
 */
const INDEX_KEY_LINE = /"(?:0|[1-9][0-9]{0,9})": /g;
/** Whichever comes first: a character Go escapes, or an array-index key; one scan usually answers both. */
const ESCAPED_OR_INDEX_KEY = /[<>&\u2028\u2029]|"(?:0|[1-9][0-9]{0,9})": /g;
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
  const keys = goKeyOrder(value);
  const record = value as Record<string, unknown>;
  const members: string[] = [];
  for (const key of keys) {
    const text = indentSorted(record[key], inner);
    if (text !== undefined) members.push(`${inner}${JSON.stringify(key)}: ${text}`);
  }
  return members.length === 0 ? '{}' : `{\n${members.join(',\n')}\n${indent}}`;
};

/** The order in which Go's layout writes an object's keys (see INDEX_KEY_LINE). */
export const goKeyOrder = (object: object): string[] => {
  const keys = Object.keys(object);
  if (keys.length > 0 && isArrayIndex(keys[0] as string)) keys.sort(compareUtf8);
  return keys;
};

// These characters never appear in JSON structure, so outside strings there is nothing to confuse.
const GO_ESCAPES: Readonly<Record<string, string>> = {
  '<': '\\u003c',
  '>': '\\u003e',
  '&': '\\u0026',
  '\u2028': '\\u2028',
  '\u2029': '\\u2029',
};
const GO_ESCAPED = /[<>&\u2028\u2029]/g;
/**
 * Below this length a `replaceAll` per character beats one regex replace with a callback (measured on
 * a resource's worth of text, about 2 KB); on a whole 60 MB state each `replaceAll` is a full copy.
 */
const SMALL_TEXT = 1 << 16;

/** Go's HTML-safe escaping of `<`, `>`, `&`, U+2028 and U+2029 inside strings (of any JSON text). */
export const escapeGo = (text: string): string => {
  if (text.length > SMALL_TEXT) return text.replace(GO_ESCAPED, (c) => GO_ESCAPES[c] as string);
  let out = text;
  for (const [c, escaped] of Object.entries(GO_ESCAPES)) {
    if (out.includes(c)) out = out.replaceAll(c, escaped);
  }
  return out;
};

/** `json.MarshalIndent(value, "", "  ")` without the trailing newline. */
const marshalIndent = (value: unknown): string => {
  const text = JSON.stringify(value, null, 2);
  ESCAPED_OR_INDEX_KEY.lastIndex = 0;
  const first = ESCAPED_OR_INDEX_KEY.exec(text);
  if (first === null) return text;
  let indexKeys = first[0].length > 1;
  if (!indexKeys) {
    INDEX_KEY_LINE.lastIndex = first.index;
    indexKeys = INDEX_KEY_LINE.test(text);
  }
  return escapeGo(indexKeys ? (indentSorted(value, '') as string) : text);
};

/**
 * `json.MarshalIndent(v, "", "  ")` plus the trailing newline Terraform adds: two-space indent, keys in
 * the order the objects hold them, and Go's HTML-safe escaping of `<`, `>`, `&`, U+2028 and U+2029.
 * (JSON.stringify already matches Go >= 1.22 for `\b`, `\f`, `\n`, `\r`, `\t` and `\u00XX` control
 * characters.)
 */
export const stringifyGo = (value: unknown): string => `${marshalIndent(value)}\n`;

/*
 * The pieces of `stringifyGo(object)` for writing it in parts: `{\n`, the members from
 * stringifyGoMember joined by `,\n` (in goKeyOrder), `\n}\n`. A member whose value is a long array can be
 * written item by item: `  "key": [\n`, the items from stringifyGoItem joined by `,\n`, `\n  ]`.
 * Each piece is laid out inside a one-member wrapper at the depth it has in the whole, so it comes out
 * exactly as in the whole text.
 */

/** `  "key": <value>`: one member of a top-level object. */
export const stringifyGoMember = (key: string, value: unknown): string =>
  marshalIndent({ [key]: value }).slice('{\n'.length, -'\n}'.length);

const ITEM_START = '{\n  "a": [\n'.length;
const ITEM_END = '\n  ]\n}'.length;

/** `    <item>`: one item of an array that is the value of a top-level member. */
export const stringifyGoItem = (item: unknown): string =>
  marshalIndent({ a: [item] }).slice(ITEM_START, -ITEM_END);
