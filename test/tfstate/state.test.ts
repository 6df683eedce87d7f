import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { isRawNumber } from '../../lambdas/shared/tfstate/json';
import {
  type InstanceV4,
  nextSerial,
  type ResourceV4,
  readState,
  readStateUtf8,
  type StateV4,
  serialText,
  writeState,
  writeStateTo,
} from '../../lambdas/shared/tfstate/state';
import { refusal } from './refusal';

const fixture = (name: string) => readFileSync(join(__dirname, '../fixtures/tfstate/core', name), 'utf8');
const TERRAFORM_WRITTEN = fixture('terraform.tfstate');

const instance = (extra: Partial<InstanceV4>): InstanceV4 => ({
  schema_version: 0,
  attributes: { id: 'x' },
  sensitive_attributes: [],
  ...extra,
});
const resource = (extra: Partial<ResourceV4> & Pick<ResourceV4, 'type' | 'name'>): ResourceV4 => ({
  mode: 'managed',
  provider: 'provider["registry.terraform.io/hashicorp/aws"]',
  instances: [instance({})],
  ...extra,
});
const stateOf = (resources: ResourceV4[]): StateV4 => ({
  version: 4,
  terraform_version: '1.13.4',
  serial: 1,
  lineage: 'l',
  outputs: {},
  resources,
  check_results: null,
});
const order = (text: string) =>
  (JSON.parse(text) as StateV4).resources.map((r) => `${r.module ?? ''}|${r.mode}|${r.type}|${r.name}`);

describe('the Terraform-written fixture', () => {
  it('round-trips byte for byte through readState and writeState', () => {
    expect(writeState(readState(TERRAFORM_WRITTEN))).toBe(TERRAFORM_WRITTEN);
  });

  it('is itself in Terraform layout: go-cty sorted keys inside attributes and identity, Go escaping, trailing newline', () => {
    // Guards the hand-written fixture, so the round trip above compares against real Terraform layout.
    const unsorted: string[] = [];
    const walk = (value: unknown, path: string, dynamicWrapper = false): void => {
      if (Array.isArray(value)) {
        for (const [i, item] of value.entries()) walk(item, `${path}[${i}]`);
      } else if (value !== null && typeof value === 'object') {
        const keys = Object.keys(value);
        const isDynamic = dynamicWrapper && keys.join() === 'value,type';
        const sorted = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        if (!isDynamic && keys.join() !== sorted.join() && !keys.every((k) => /^\d+$/.test(k)))
          unsorted.push(path);
        for (const key of keys) walk((value as Record<string, unknown>)[key], `${path}.${key}`, true);
      }
    };
    const state = JSON.parse(TERRAFORM_WRITTEN) as StateV4;
    for (const r of state.resources) {
      for (const i of r.instances) {
        walk(i.attributes, `${r.type}.${r.name}.attributes`, true);
        walk(i.identity, `${r.type}.${r.name}.identity`);
      }
    }
    expect(unsorted).toEqual([]);
    expect(TERRAFORM_WRITTEN).not.toMatch(/[<>&]/);
    expect(TERRAFORM_WRITTEN.endsWith('}\n')).toBe(true);
  });

  it('keeps integers above 2^53 in attributes and outputs', () => {
    const state = readState(TERRAFORM_WRITTEN);
    const port = state.resources.find((r) => r.type === 'random_integer')?.instances[0]?.attributes;
    expect(isRawNumber(port?.max)).toBe(true);
    expect(writeState(state)).toContain('"max": 9223372036854775807,');
    expect(writeState(state)).toContain('"port": 7205759403792793599');
  });

  it('keeps check_results, the sensitive output, identity and private untouched', () => {
    const state = readState(TERRAFORM_WRITTEN);
    expect(state.check_results).toHaveLength(2);
    expect(state.outputs.db_password?.sensitive).toBe(true);
    const eip = state.resources.find((r) => r.type === 'aws_eip')?.instances[0];
    expect(eip?.identity).toEqual({
      account_id: '123456789012',
      id: 'eipalloc-0123456789abcdef0',
      region: 'eu-central-1',
    });
    expect(eip?.private).toMatch(/^eyJlMmJmYjczMC1l/);
  });
});

describe('writeState', () => {
  it('sorts resources by module string, data before managed, type, then name', () => {
    const text = writeState(
      stateOf([
        resource({ module: 'module.a[2]', type: 'aws_instance', name: 'web' }),
        resource({ type: 'aws_instance', name: 'web' }),
        resource({ module: 'module.a[10]', type: 'aws_instance', name: 'web' }),
        resource({ type: 'aws_eip', name: 'web' }),
        resource({ type: 'aws_instance', name: 'api' }),
        resource({ mode: 'data', type: 'aws_subnet', name: 'main' }),
        resource({ module: 'module.a', type: 'aws_instance', name: 'web' }),
      ]),
    );
    expect(order(text)).toEqual([
      '|data|aws_subnet|main',
      '|managed|aws_eip|web',
      '|managed|aws_instance|api',
      '|managed|aws_instance|web',
      'module.a|managed|aws_instance|web',
      'module.a[10]|managed|aws_instance|web',
      'module.a[2]|managed|aws_instance|web',
    ]);
  });

  it('sorts instances: no key, ints ascending, strings, and deposed objects after the current one', () => {
    const text = writeState(
      stateOf([
        resource({
          type: 'aws_instance',
          name: 'web',
          instances: [
            instance({ index_key: 'b' }),
            instance({ index_key: 10 }),
            instance({ index_key: 2, deposed: 'aaaa0000' }),
            instance({ index_key: 'a' }),
            instance({ index_key: 2 }),
            instance({}),
          ],
        }),
      ]),
    );
    const instances = (JSON.parse(text) as StateV4).resources[0]?.instances;
    expect(instances?.map((i) => [i.index_key ?? null, i.deposed ?? null])).toEqual([
      [null, null],
      [2, null],
      [2, 'aaaa0000'],
      [10, null],
      ['a', null],
      ['b', null],
    ]);
  });

  it('writes the struct key order whatever order the objects hold their keys in', () => {
    const shuffled = {
      check_results: null,
      resources: [
        {
          instances: [{ dependencies: ['x.y'], attributes: { id: 'i' }, schema_version: 1, index_key: 0 }],
          provider: 'p',
          name: 'n',
          type: 't',
          mode: 'managed',
          module: 'module.m',
        },
      ],
      outputs: { b: { type: 'string', value: 'x' }, a: { sensitive: true, type: 'string', value: 'y' } },
      lineage: 'l',
      serial: 3,
      terraform_version: '1.13.4',
      version: 4,
    } as unknown as StateV4;
    const text = writeState(shuffled);
    expect(text.indexOf('"version"')).toBeLessThan(text.indexOf('"terraform_version"'));
    expect(text.indexOf('"lineage"')).toBeLessThan(text.indexOf('"outputs"'));
    expect(text.indexOf('"a": {')).toBeLessThan(text.indexOf('"b": {'));
    expect(text).toContain(
      '"a": {\n      "value": "y",\n      "type": "string",\n      "sensitive": true\n    }',
    );
    expect(text).toContain(
      '"module": "module.m",\n      "mode": "managed",\n      "type": "t",\n      "name": "n"',
    );
    expect(text).toContain('"index_key": 0,\n          "schema_version": 1,\n          "attributes"');
    expect(text.endsWith('"check_results": null\n}\n')).toBe(true);
  });

  it('does not reorder or change the state it is given', () => {
    const state = stateOf([resource({ type: 'b', name: 'x' }), resource({ type: 'a', name: 'x' })]);
    const before = JSON.stringify(state);
    writeState(state);
    expect(JSON.stringify(state)).toBe(before);
  });
});

const FIXTURES = join(__dirname, '../fixtures/tfstate');
/** Every format 4 state among the fixtures (the format 3 one is there to be refused). */
const format4Fixtures = (): string[] =>
  readdirSync(FIXTURES, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.tfstate'))
    .map((name) => join(FIXTURES, name))
    .filter((file) => (JSON.parse(readFileSync(file, 'utf8')) as { version: unknown }).version === 4);

const chunksOf = (state: StateV4): string[] => {
  const chunks: string[] = [];
  writeStateTo(state, (chunk) => chunks.push(chunk));
  return chunks;
};

describe('writeStateTo', () => {
  it('writes exactly the text of writeState for every fixture state, read and edited', () => {
    const files = format4Fixtures();
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const file of files) {
      const state = readState(readFileSync(file, 'utf8'), file);
      const edited: StateV4 = {
        ...state,
        serial: nextSerial(state.serial),
        resources: [...state.resources].reverse(),
      };
      for (const each of [state, edited]) {
        expect({ file: relative(FIXTURES, file), text: chunksOf(each).join('') }).toEqual({
          file: relative(FIXTURES, file),
          text: writeState(each),
        });
      }
    }
  });

  it('writes the state resource by resource, not as one text', () => {
    const state = readState(TERRAFORM_WRITTEN);
    const chunks = chunksOf(state);
    expect(state.resources.length).toBeGreaterThan(1);
    expect(chunks.length).toBeGreaterThan(state.resources.length);
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThan(TERRAFORM_WRITTEN.length / 2);
  });

  it('matches writeState on what forces the slow paths: map keys that are array indexes, Go escapes, big integers, unknown keys, no resources', () => {
    const states = [
      readState(
        '{"5": "unknown top-level key", "version": 4, "terraform_version": "1.13.4", "serial": 9007199254740993, "lineage": "l", "outputs": {"b": {"value": "<&>", "type": "string"}, "a": {"value": {"10": 1.0, "9": 2}, "type": ["map", "number"]}}, "resources": [{"mode": "managed", "type": "aws_instance", "name": "web", "provider": "p", "instances": [{"index_key": "b\u2028", "schema_version": 1, "attributes": {"tags": {"10": "ten", "9": "nine", "Name": "a<b>"}}, "sensitive_attributes": []}, {"index_key": "a", "schema_version": 1, "attributes": {}, "x_unknown": true}]}], "check_results": null}',
      ),
      stateOf([]),
      {
        ...stateOf([resource({ type: 'aws_eip', name: 'web' })]),
        check_results: undefined,
      } as unknown as StateV4,
    ];
    for (const state of states) expect(chunksOf(state).join('')).toBe(writeState(state));
  });

  it('does not reorder or change the state it is given', () => {
    const state = readState(TERRAFORM_WRITTEN);
    state.resources.reverse();
    const before = writeState(state);
    const order = state.resources.map((r) => r.name);
    chunksOf(state);
    expect(state.resources.map((r) => r.name)).toEqual(order);
    expect(writeState(state)).toBe(before);
  });
});

describe('readStateUtf8', () => {
  const utf8 = (text: string) => Buffer.from(text, 'utf8');

  it('reads every fixture state as readState reads its text', () => {
    for (const file of format4Fixtures()) {
      const bytes = readFileSync(file);
      const state = readStateUtf8(bytes, file);
      expect(writeState(state)).toBe(writeState(readState(bytes.toString('utf8'), file)));
      expect(JSON.stringify(state)).toBe(JSON.stringify(readState(bytes.toString('utf8'), file)));
    }
  });

  it('keeps integers above 2^53 exactly', () => {
    const state = readStateUtf8(utf8(TERRAFORM_WRITTEN));
    const port = state.resources.find((r) => r.type === 'random_integer')?.instances[0]?.attributes;
    expect(isRawNumber(port?.max)).toBe(true);
    expect(writeState(state)).toBe(TERRAFORM_WRITTEN);
  });

  it('refuses bytes that are not UTF-8 (a UTF-16 file from a shell redirect) and names the file', () => {
    const utf16 = Buffer.from(`\uFEFF${TERRAFORM_WRITTEN}`, 'utf16le');
    const error = refusal(() => readStateUtf8(utf16, 'terraform.tfstate'));
    expect(error.reason).toBe('UnsupportedState');
    expect(error.message).toBe('terraform.tfstate is not UTF-8 text');
  });

  it('refuses what readState refuses, with the same message', () => {
    const texts = [
      `\uFEFF${TERRAFORM_WRITTEN}`,
      '',
      ' \n\t',
      '\u00a0\u2028',
      'version = 4\n',
      '{"version": 4, "resources": [], "outputs": {}, "n": 1.0,}',
      '[4]',
      '{"version": 3, "serial": 1, "modules": []}',
      '{"serial": 1, "resources": [], "outputs": {}}',
    ];
    for (const text of texts) {
      const expected = refusal(() => readState(text, 'f.tfstate'));
      const error = refusal(() => readStateUtf8(utf8(text), 'f.tfstate'));
      expect({ text, reason: error.reason, message: error.message }).toEqual({
        text,
        reason: expected.reason,
        message: expected.message,
      });
    }
  });
});

describe('readState refusals', () => {
  it('refuses a format 3 state and names the version', () => {
    const error = refusal(() => readState('{"version": 3, "serial": 1, "modules": []}', 'terraform.tfstate'));
    expect(error.reason).toBe('UnsupportedState');
    expect(error.message).toContain('terraform.tfstate uses state format version 3');
    expect(error.message).toContain('only format 4');
  });

  it('refuses a state without a version', () => {
    const error = refusal(() => readState('{"serial": 1, "resources": [], "outputs": {}}'));
    expect(error.reason).toBe('UnsupportedState');
    expect(error.message).toContain('does not have a "version"');
  });

  it('refuses a byte-order mark and says how to fix it', () => {
    const error = refusal(() => readState(`\uFEFF${TERRAFORM_WRITTEN}`));
    expect(error.reason).toBe('UnsupportedState');
    expect(error.message).toMatch(/byte-order mark.*UTF-8 without BOM/);
  });

  it('refuses text that is not JSON', () => {
    const error = refusal(() => readState('version = 4\n'));
    expect(error.reason).toBe('UnsupportedState');
    expect(error.message).toContain('could not be parsed as JSON');
  });

  it('says where a broken state stops parsing without quoting any of its text (states hold secrets)', () => {
    const broken = '{\n  "version": 4,\n  "outputs": {"db": {"value": "hunter2-SuperSecret" x}}\n}\n';
    const error = refusal(() => readState(broken));
    expect(error.message).not.toContain('SuperSecret');
    expect(error.message).toMatch(/syntax error at (line 3, column \d+|character \d+)/);
    expect(error.cause).toBeUndefined();
  });

  it('refuses, rather than risk rounding a big integer, on a Node.js without JSON.rawJSON', () => {
    const rawJSON = JSON.rawJSON;
    try {
      (JSON as { rawJSON?: unknown }).rawJSON = undefined;
      const error = refusal(() => readState('{"version": 4, "serial": 18446744073709551615}'));
      expect(error.message).toContain('Node.js 22 or later');
    } finally {
      JSON.rawJSON = rawJSON;
    }
  });

  it('refuses an empty file', () => {
    for (const text of ['', '  \n']) {
      const error = refusal(() => readState(text));
      expect(error.reason).toBe('UnsupportedState');
      expect(error.message).toContain('is empty');
    }
  });

  it('refuses JSON that is not an object', () => {
    expect(refusal(() => readState('[4]')).message).toContain('not a JSON object');
  });
});

describe('serials', () => {
  it('adds one, exactly, even past 2^53', () => {
    expect(nextSerial(41)).toBe(42);
    const big = nextSerial(Number.MAX_SAFE_INTEGER);
    expect(serialText(big)).toBe('9007199254740992');
    const state = readState(
      '{"version": 4, "terraform_version": "1.13.4", "serial": 18446744073709551614, "lineage": "l", "outputs": {}, "resources": [], "check_results": null}',
    );
    expect(serialText(nextSerial(state.serial))).toBe('18446744073709551615');
  });
});
