// biome-ignore-all lint/suspicious/noTemplateCurlyInString: HCL template sequences are the subject of these tests
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  formatAddress,
  formatIndexKey,
  formatModulePath,
  parseAddress,
  parseModulePath,
  parseResourceAddress,
} from '../../lambdas/shared/tfstate/address';
import { TfStateError } from '../../lambdas/shared/tfstate/errors';
import { findInstance, findResource, instanceAddressOf } from '../../lambdas/shared/tfstate/lookup';
import { type InstanceV4, type ResourceV4, readState } from '../../lambdas/shared/tfstate/state';

const refusal = (text: string, parse: (t: string) => unknown = parseAddress): TfStateError => {
  try {
    parse(text);
  } catch (error) {
    if (error instanceof TfStateError) return error;
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(text)} to be refused`);
};

describe('parseAddress and formatAddress', () => {
  it.each([
    'aws_instance.web',
    'aws_instance.web[0]',
    'aws_instance.web["a"]',
    'data.aws_ami.ubuntu',
    'data.aws_ami.ubuntu[3]',
    'module.ec2-instance',
    'module.ec2-instance.aws_instance.this',
    'module.a[0].module.b["x"].aws_instance.web["y"]',
    'module.a["eu-west-1"].module.b[10].data.aws_subnet.main',
    'module._private.aws_s3_bucket.logs_2024',
    'aws_instance.web["line\\nbreak \\"quoted\\" back\\\\slash"]',
    'aws_instance.web["$${not_a_template} %%{nor_this}"]',
    'aws_instance.web["Zürich 日本 <&>"]',
    'aws_instance.web[""]',
  ])('round-trips %s', (text) => {
    expect(formatAddress(parseAddress(text))).toBe(text);
  });

  it('reads nested modules with keys, data mode and a for_each key', () => {
    expect(parseAddress('module.a[0].module.b["x"].data.aws_ami.img["k"]')).toEqual({
      kind: 'resource',
      module: [
        { name: 'a', key: 0 },
        { name: 'b', key: 'x' },
      ],
      mode: 'data',
      type: 'aws_ami',
      name: 'img',
      key: 'k',
    });
    expect(parseAddress('module.a')).toEqual({ kind: 'module', module: [{ name: 'a' }] });
  });

  it('tells an int key from a string key that looks like one', () => {
    expect(parseResourceAddress('aws_instance.web[1]').key).toBe(1);
    expect(parseResourceAddress('aws_instance.web["1"]').key).toBe('1');
  });

  it('decodes HCL escapes in a string key', () => {
    expect(parseResourceAddress('x.y["a\\tb\\r\\u00e9\\U0001F600$${x}%%{y}$z%"]').key).toBe(
      'a\tb\ré\u{1F600}${x}%{y}$z%',
    );
  });
});

describe('formatIndexKey', () => {
  it('escapes like Terraform: \\n \\" \\\\, doubles the template introducers, \\u for non-printables', () => {
    expect(formatIndexKey(0)).toBe('[0]');
    expect(formatIndexKey('a"b\\c\nd')).toBe('["a\\"b\\\\c\\nd"]');
    expect(formatIndexKey('${var} %{if} $ % {')).toBe('["$${var} %%{if} $ % {"]');
    expect(formatIndexKey('\u0001\u00a0\u{E0001}')).toBe('["\\u0001\\u00a0\\U000e0001"]');
    expect(formatIndexKey('tab\there')).toBe('["tab\\there"]');
  });
});

describe('module paths', () => {
  it("reads the state's module field, root included", () => {
    expect(parseModulePath('')).toEqual([]);
    expect(parseModulePath(undefined)).toEqual([]);
    expect(parseModulePath('module.a[10].module.b["x.y"]')).toEqual([
      { name: 'a', key: 10 },
      { name: 'b', key: 'x.y' },
    ]);
    expect(formatModulePath([])).toBe('');
    expect(
      formatModulePath([
        { name: 'a', key: 10 },
        { name: 'b', key: 'x.y' },
      ]),
    ).toBe('module.a[10].module.b["x.y"]');
  });

  it('refuses a module field that names a resource', () => {
    const error = refusal('module.a.aws_instance.web', parseModulePath);
    expect(error.message).toContain('found "aws_instance"');
  });
});

describe('refusals', () => {
  it.each([
    ['', 'empty'],
    ['aws_instance', 'needs "<type>.<name>"'],
    ['data.aws_ami', 'needs "data.<type>.<name>"'],
    ['aws_instance.web.extra', 'unexpected "extra"'],
    ['module', '"module." at character 0 must be followed by a module name'],
    ['module.a.module', 'must be followed by a module name'],
    ['aws_instance.web[', 'must be a whole number or a quoted string'],
    ['aws_instance.web[-1]', 'must be a whole number or a quoted string'],
    ['aws_instance.web[1.5]', 'expected "]"'],
    ['aws_instance.web["a"', 'expected "]"'],
    ['aws_instance.web["a]', 'is not closed'],
    ['aws_instance.web["${var.x}"]', 'template sequence "${"'],
    ['aws_instance.web["\\q"]', 'unsupported escape sequence "\\q"'],
    ['aws_instance.web["\\u12"]', 'needs 4 hex digits'],
    ['aws_instance[0].web', 'the resource type "aws_instance" at character 0 cannot take an index'],
    ['module[0].a', 'the keyword "module" at character 0 cannot take an index'],
    ['aws_instance..web', 'expected a name at character 13'],
    ['1aws.web', 'expected a name at character 0, found "1"'],
    ['aws_instance.web ', 'unexpected " "'],
    ['aws_instance.web[0][1]', 'unexpected "["'],
  ])('refuses %j, saying %s', (text, problem) => {
    const error = refusal(text);
    expect(error.reason).toBe('InvalidAddress');
    expect(error.message).toContain(`Invalid address ${JSON.stringify(text)}`);
    expect(error.message).toContain(problem);
  });

  it('refuses a module where a resource is required', () => {
    const error = refusal('module.web', parseResourceAddress);
    expect(error.reason).toBe('InvalidAddress');
    expect(error.message).toContain('module address; a resource address is needed');
  });
});

describe('lookups in a Terraform-written state', () => {
  const state = readState(
    readFileSync(join(__dirname, '../fixtures/tfstate/core/terraform.tfstate'), 'utf8'),
  );

  it('finds a for_each instance in a nested keyed module and prints its address back', () => {
    const found = findInstance(
      state,
      parseResourceAddress('module.net.module.dns["eu"].null_resource.record["b<&>"]'),
    );
    expect(found?.instance.attributes?.id).toBe('5029384756102938475');
    expect(instanceAddressOf(found?.resource as ResourceV4, found?.instance as InstanceV4)).toBe(
      'module.net.module.dns["eu"].null_resource.record["b<&>"]',
    );
  });

  it('finds a resource whatever key the address carries, and an instance only with its key', () => {
    expect(findResource(state, parseResourceAddress('random_pet.name[7]'))?.instances).toHaveLength(3);
    expect(findInstance(state, parseResourceAddress('random_pet.name[7]'))).toBeUndefined();
    expect(findInstance(state, parseResourceAddress('random_pet.name["1"]'))).toBeUndefined();
    expect(findInstance(state, parseResourceAddress('random_pet.name[1]'))?.instance.attributes?.id).toBe(
      'calm-heron',
    );
    expect(findInstance(state, parseResourceAddress('random_pet.name'))).toBeUndefined();
  });

  it('tells data sources from managed resources of the same type and name', () => {
    expect(findResource(state, parseResourceAddress('data.aws_caller_identity.current'))?.mode).toBe('data');
    expect(findResource(state, parseResourceAddress('aws_caller_identity.current'))).toBeUndefined();
    const data = findInstance(state, parseResourceAddress('data.aws_caller_identity.current'));
    expect(instanceAddressOf(data?.resource as ResourceV4, data?.instance as InstanceV4)).toBe(
      'data.aws_caller_identity.current',
    );
  });

  it('returns the current object, never a deposed one', () => {
    const found = findInstance(state, parseResourceAddress('module.app[1].terraform_data.config'));
    expect(found?.instance.deposed).toBeUndefined();
    expect(found?.instance.attributes?.id).toBe('1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d');
  });
});
