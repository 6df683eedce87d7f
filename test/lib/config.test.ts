import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { parseConfig } from '../../lambdas/shared/config';
import { configPathFrom, DEFAULT_CONFIG_PATH, loadConfig } from '../../lib/config-loader';
import { CONFIG_SCHEMA_PATH, renderConfigSchema } from '../../lib/config-schema';
import { REPO } from './stack-fixture';

const writeTemp = (name: string, text: string): string => {
  const path = join(mkdtempSync(join(tmpdir(), 'understudy-config-')), name);
  writeFileSync(path, text);
  return path;
};
const validTarget = {
  name: 'web',
  allocationId: 'eipalloc-0123456789abcdef0',
  domain: 'www.example.com',
  image: { imageId: 'ami-0123456789abcdef0' },
  tls: { mode: 'none' },
};

describe('loadConfig', () => {
  test('returns the parsed configuration with defaults filled in', () => {
    const path = writeTemp('ok.json', JSON.stringify({ targets: [validTarget] }));
    const config = loadConfig(path);
    expect(config.targets[0]?.readiness.timeoutSeconds).toBe(900);
    expect(config.notifications.emails).toEqual([]);
  });

  test('fails naming every bad field with its fix', () => {
    const path = writeTemp(
      'bad.json',
      JSON.stringify({
        targets: [{ ...validTarget, domain: 'Not A Host', allocationId: 'eip-1', colour: 'blue' }],
      }),
    );
    let message = '';
    try {
      loadConfig(path);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain(`${path} is invalid:`);
    expect(message).toMatch(/targets\[0\]\.domain: use a lowercase DNS name/);
    expect(message).toMatch(/targets\[0\]\.allocationId: use an allocation id/);
    expect(message).toMatch(/targets\[0\]: unknown field "colour": remove it/);
  });

  test('fails when the file is not JSON, saying so', () => {
    const path = writeTemp('broken.json', '{ "targets": [ }');
    expect(() => loadConfig(path)).toThrow(/broken\.json is not valid JSON/);
  });

  test('fails when the file is missing, saying how to create it', () => {
    expect(() => loadConfig(join(tmpdir(), 'no-such-understudy.config.json'))).toThrow(
      /cannot read the configuration .* copy understudy\.config\.example\.json to understudy\.config\.json/,
    );
  });
});

describe('configPathFrom', () => {
  test('defaults to understudy.config.json', () => {
    expect(configPathFrom(new App().node)).toBe(DEFAULT_CONFIG_PATH);
  });

  test('takes the path from the "config" context', () => {
    expect(configPathFrom(new App({ context: { config: 'prod.json' } }).node)).toBe('prod.json');
  });

  test('fails when the "config" context is not a path', () => {
    expect(() => configPathFrom(new App({ context: { config: '' } }).node)).toThrow(
      /context "config" must be a file path/,
    );
  });
});

describe('committed configuration files', () => {
  test('the JSON schema is the one the config schema generates (run `npm run schema` after changing it)', () => {
    expect(readFileSync(join(REPO, CONFIG_SCHEMA_PATH), 'utf8')).toBe(renderConfigSchema());
  });

  test.each(['understudy.config.example.json', 'understudy.config.json'])(
    '%s is valid and points at the schema',
    (file) => {
      const raw = JSON.parse(readFileSync(join(REPO, file), 'utf8'));
      expect(raw.$schema).toBe(`./${CONFIG_SCHEMA_PATH}`);
      expect(() => parseConfig(raw, file)).not.toThrow();
    },
  );

  test('the schema describes input: fields with defaults are optional, required ones are listed', () => {
    const schema = JSON.parse(renderConfigSchema());
    const target = schema.properties.targets.items;
    expect(target.required).toEqual(expect.arrayContaining(['name', 'allocationId', 'domain', 'image']));
    expect(target.required).not.toContain('readiness');
    // tls.mode may be left out: restore, when the old box serves a valid certificate.
    expect(target.required).not.toContain('tls');
    expect(target.additionalProperties).toBe(false);
  });
});

describe('the terraform block of a target', () => {
  const withTerraform = (terraform: Record<string, unknown>) => ({
    targets: [
      {
        ...validTarget,
        terraform: {
          state: 's3://acme-state/web/terraform.tfstate',
          instanceAddress: 'aws_instance.web',
          ...terraform,
        },
      },
    ],
  });
  const problemsOf = (raw: unknown): string => {
    try {
      parseConfig(raw);
      return '';
    } catch (error) {
      return (error as Error).message;
    }
  };

  test('defaults to the lock file, the default workspace and a two-minute lock wait', () => {
    const terraform = parseConfig(withTerraform({})).targets[0]?.terraform;
    expect(terraform).toMatchObject({
      useLockfile: true,
      workspace: 'default',
      workspaceKeyPrefix: 'env:',
      lockTimeoutSeconds: 120,
    });
  });

  test('refuses a state location that is not s3://bucket/key, naming the field', () => {
    expect(problemsOf(withTerraform({ state: 's3://acme-state//web.tfstate' }))).toMatch(
      /targets\[0\]\.terraform\.state: use s3:\/\/<bucket>\/<key>/,
    );
    expect(problemsOf(withTerraform({ state: 'terraform.tfstate' }))).toMatch(/terraform\.state/);
  });

  test('refuses an address that is not an aws_instance', () => {
    expect(problemsOf(withTerraform({ instanceAddress: 'aws_eip.web' }))).toMatch(
      /targets\[0\]\.terraform\.instanceAddress: use the Terraform address of the aws_instance/,
    );
  });

  test('refuses to take no lock at all', () => {
    expect(problemsOf(withTerraform({ useLockfile: false }))).toMatch(
      /targets\[0\]\.terraform\.useLockfile: take at least one lock/,
    );
    expect(problemsOf(withTerraform({ useLockfile: false, dynamodbTable: 'locks' }))).toBe('');
  });

  test('refuses a backend region that is not a region name', () => {
    expect(problemsOf(withTerraform({ region: 'Ireland' }))).toMatch(
      /targets\[0\]\.terraform\.region: use an AWS region name/,
    );
    expect(problemsOf(withTerraform({ region: 'us-east-1' }))).toBe('');
  });

  test('refuses a workspace name that could escape its key prefix', () => {
    expect(problemsOf(withTerraform({ workspace: '../prod' }))).toMatch(/targets\[0\]\.terraform\.workspace/);
  });
});
