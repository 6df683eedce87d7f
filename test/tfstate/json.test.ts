import { compareUtf8, isRawNumber, parseLossless, stringifyGo } from '../../lambdas/shared/tfstate/json';

const roundTrip = (text: string): string => stringifyGo(parseLossless(text));

describe('parseLossless', () => {
  it('keeps an integer above 2^53 exactly, where JSON.parse would round it', () => {
    const parsed = parseLossless('{"max": 9223372036854775807, "odd": 9007199254740993}') as Record<
      string,
      unknown
    >;
    expect(isRawNumber(parsed.max)).toBe(true);
    expect(JSON.stringify(parsed)).toBe('{"max":9223372036854775807,"odd":9007199254740993}');
  });

  it('keeps 1.0, 1e3, 1E+3 and -0 as written', () => {
    const text = '{"a": [1.0, 1e3, 1E+3, -0, 0.5, -12]}';
    expect(JSON.stringify(parseLossless(text))).toBe('{"a":[1.0,1e3,1E+3,-0,0.5,-12]}');
  });

  it('returns plain numbers when every number survives a plain parse', () => {
    const parsed = parseLossless('{"port": 443, "ratio": 0.25}') as Record<string, unknown>;
    expect(parsed.port).toBe(443);
    expect(parsed.ratio).toBe(0.25);
  });

  it('is not misled by digits inside strings', () => {
    const parsed = parseLossless('{"note": "version: 1.0, count: 01", "n": 3}') as Record<string, unknown>;
    expect(parsed.note).toBe('version: 1.0, count: 01');
    expect(parsed.n).toBe(3);
  });
});

describe('stringifyGo', () => {
  it('writes two-space indentation and one trailing newline', () => {
    expect(stringifyGo({ a: [1, { b: null }], c: {}, d: [] })).toBe(
      '{\n  "a": [\n    1,\n    {\n      "b": null\n    }\n  ],\n  "c": {},\n  "d": []\n}\n',
    );
  });

  it('escapes < > & U+2028 U+2029 as Go does and leaves non-ASCII as UTF-8', () => {
    expect(stringifyGo({ s: 'a<b>&c\u2028\u2029 Zürich 日本' })).toBe(
      '{\n  "s": "a\\u003cb\\u003e\\u0026c\\u2028\\u2029 Zürich 日本"\n}\n',
    );
  });

  it('escapes control characters like Go 1.22+: short forms and lowercase \\u00XX', () => {
    expect(stringifyGo(['\n\r\t\b\f\u0001\u001f"\\'])).toBe(
      '[\n  "\\n\\r\\t\\b\\f\\u0001\\u001f\\"\\\\"\n]\n',
    );
  });

  it('writes numeric-looking map keys in Go byte order, not in JS index order', () => {
    const text =
      '{\n  "tags": {\n    "-x": "minus",\n    "10": "ten",\n    "9": "nine",\n    "Name": "web"\n  }\n}\n';
    expect(roundTrip(text)).toBe(text);
  });

  it('keeps big integers, 1.0 and -0 through a parse and write', () => {
    const text =
      '{\n  "a": 9007199254740993,\n  "b": 1.0,\n  "c": 1e3,\n  "d": -0,\n  "e": [\n    18446744073709551615\n  ]\n}\n';
    expect(roundTrip(text)).toBe(text);
  });

  it('keeps big integers when numeric-looking keys force the ordered writer', () => {
    const text = '{\n  "10": 1.0,\n  "9": 9007199254740993\n}\n';
    expect(roundTrip(text)).toBe(text);
  });
});

describe('compareUtf8', () => {
  it('orders like Go bytewise comparison, astral characters after U+E000..U+FFFF', () => {
    expect(['\u{1F600}', '\uFFFD', 'z', 'a', 'é'].sort(compareUtf8)).toEqual([
      'a',
      'z',
      'é',
      '\uFFFD',
      '\u{1F600}',
    ]);
    expect(compareUtf8('a', 'ab')).toBeLessThan(0);
    expect(compareUtf8('abc', 'abc')).toBe(0);
  });
});
