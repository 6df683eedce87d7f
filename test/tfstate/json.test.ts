import {
  compareUtf8,
  goKeyOrder,
  isRawNumber,
  parseLossless,
  parseLosslessUtf8,
  stringifyGo,
  stringifyGoItem,
  stringifyGoMember,
} from '../../lambdas/shared/tfstate/json';

const roundTrip = (text: string): string => stringifyGo(parseLossless(text));

const plainParseError = (text: string): string => {
  try {
    JSON.parse(text);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`${text} is valid JSON`);
};

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

  it('keeps the numbers outside strings and leaves look-alikes inside strings as text', () => {
    const text =
      '{"a": "x: 1.0, [9007199254740993", "b": 1.0, "c": "q\\": 1e3", "d": "ends in \\\\", "e": [-0, 1E+3]}';
    const parsed = parseLossless(text) as Record<string, unknown>;
    expect(parsed.a).toBe('x: 1.0, [9007199254740993');
    expect(parsed.c).toBe('q": 1e3');
    expect(parsed.d).toBe('ends in \\');
    expect(isRawNumber(parsed.b)).toBe(true);
    expect(JSON.stringify(parsed)).toBe(
      '{"a":"x: 1.0, [9007199254740993","b":1.0,"c":"q\\": 1e3","d":"ends in \\\\","e":[-0,1E+3]}',
    );
  });

  it('keeps strings that hold U+0001 as they are, next to numbers it keeps', () => {
    const parsed = parseLossless('{"s": "\\u00010", "t": ["\\u00011"], "n": 1.0}') as Record<string, unknown>;
    expect(parsed.s).toBe('\u00010');
    expect(parsed.t).toEqual(['\u00011']);
    expect(JSON.stringify(parsed.n)).toBe('1.0');
  });

  it('keeps a number that is the whole document, and one under a __proto__ key as data', () => {
    expect(JSON.stringify(parseLossless('1.0'))).toBe('1.0');
    const parsed = parseLossless('{"__proto__": 9007199254740993}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype);
    expect(Object.hasOwn(parsed, '__proto__')).toBe(true);
    expect(JSON.stringify(parsed)).toBe('{"__proto__":9007199254740993}');
  });

  it('rejects invalid JSON with the error a plain parse gives for the text as written', () => {
    for (const text of ['{"a": 1.0,}', '{"a": 1.0.0}', '{"a": 01.5}', '[9007199254740993']) {
      expect(() => parseLossless(text)).toThrow(new SyntaxError(plainParseError(text)));
    }
  });
});

describe('parseLosslessUtf8', () => {
  const utf8 = (text: string) => new TextEncoder().encode(text);

  it('parses UTF-8 bytes as parseLossless parses the text, numbers after non-ASCII text included', () => {
    const text =
      '{"Zürich 日本 \u{1F600}": "é: 1.0", "n": 9007199254740993, "m": [1e3, -0, 0.5], "s": "\\u0001x"}';
    const parsed = parseLosslessUtf8(utf8(text));
    expect(JSON.stringify(parsed)).toBe(JSON.stringify(parseLossless(text)));
    expect(JSON.stringify(parsed)).toBe(
      '{"Zürich 日本 \u{1F600}":"é: 1.0","n":9007199254740993,"m":[1e3,-0,0.5],"s":"\\u0001x"}',
    );
  });

  it('parses a part of a larger buffer without reading outside it', () => {
    const whole = utf8('xx[1.0, 2]yy');
    expect(JSON.stringify(parseLosslessUtf8(whole.subarray(2, whole.length - 2)))).toBe('[1.0,2]');
  });

  it('refuses bytes that are not UTF-8, with or without numbers to keep', () => {
    // The decoder's TypeError comes from Node's realm, not the test's: match the message.
    const notUtf8 = 'not valid for encoding utf-8';
    expect(() => parseLosslessUtf8(new Uint8Array([0x5b, 0xff, 0x5d]))).toThrow(notUtf8);
    expect(() => parseLosslessUtf8(new Uint8Array([...utf8('["'), 0xc3, ...utf8('", 1.0]')]))).toThrow(
      notUtf8,
    );
  });

  it('rejects invalid JSON with the error a plain parse of the text gives', () => {
    const text = '{"ü": 1.0,}';
    expect(() => parseLosslessUtf8(utf8(text))).toThrow(new SyntaxError(plainParseError(text)));
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

describe('stringifyGo in pieces', () => {
  const pieces = (object: Record<string, unknown>, split: string): string => {
    const members = goKeyOrder(object).map((key) => {
      const value = object[key];
      if (key !== split || !Array.isArray(value) || value.length === 0) return stringifyGoMember(key, value);
      return `  ${JSON.stringify(key)}: [\n${value.map(stringifyGoItem).join(',\n')}\n  ]`;
    });
    return members.length === 0 ? '{}\n' : `{\n${members.join(',\n')}\n}\n`;
  };

  it('joins members and array items into exactly the whole text', () => {
    const value = parseLossless(
      '{"b": 9007199254740993, "list": [{"s": "<a & b>", "n": 1.0}, [], {"10": 1, "9": 2, "x": "\u2028"}, null], "a<": {"k": []}, "empty": []}',
    ) as Record<string, unknown>;
    expect(pieces(value, 'list')).toBe(stringifyGo(value));
  });

  it('orders top-level keys as the whole text does when one is an array index', () => {
    const value = parseLossless('{"version": 4, "5": "five", "10": "ten", "list": [1]}') as Record<
      string,
      unknown
    >;
    expect(goKeyOrder(value)).toEqual(['10', '5', 'list', 'version']);
    expect(pieces(value, 'list')).toBe(stringifyGo(value));
  });

  it('writes an empty object as the whole text does', () => {
    expect(pieces({}, 'list')).toBe(stringifyGo({}));
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
