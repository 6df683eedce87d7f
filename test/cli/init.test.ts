import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { InitDocument } from '../../bin/init';
import { runCli } from '../../bin/program';
import { ec2Client, s3Client } from '../../lambdas/shared/clients';
import { loadConfig } from '../../lib/config-loader';
import { DEMO_TERRAFORM } from '../../sandbox/terraform';
import { captureIo, until, useAccount } from './operator-world';

const world = useAccount();
const STATE_URL = `s3://${DEMO_TERRAFORM.bucket}/${DEMO_TERRAFORM.key}`;
const dir = mkdtempSync(join(tmpdir(), 'understudy-init-'));

const init = async (argv: readonly string[]) => {
  const capture = captureIo();
  const code = await runCli(['init', ...argv], capture.io);
  return { code, stdout: capture.stdout(), stderr: capture.stderr() };
};

/** Calls that changed the account since `mark` (what the SDK sent; boxes' own traffic aside). */
const changesSince = (mark: number) =>
  world.account.sandbox.calls.slice(mark).filter((c) => c.mutating && c.via === undefined);

const sandboxState = async (): Promise<{ resources: { type: string; name: string }[] }> => {
  const object = await s3Client().send(
    new GetObjectCommand({ Bucket: DEMO_TERRAFORM.bucket, Key: DEMO_TERRAFORM.key }),
  );
  return JSON.parse((await object.Body?.transformToString()) ?? '') as {
    resources: { type: string; name: string }[];
  };
};

const writeState = (name: string, state: unknown): string => {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(state));
  return file;
};

describe('understudy init', () => {
  it('finds the instance behind the EIP and its Terraform address, prints a target loadConfig accepts, and changes nothing', async () => {
    const { seeded } = world.account.deployment;
    const mark = world.account.sandbox.calls.length;

    const run = await init([
      'web',
      '--eip',
      seeded.allocationId,
      '--state',
      STATE_URL,
      '--lock-table',
      DEMO_TERRAFORM.table,
      '--domain',
      'web.example.test',
      '--json',
    ]);
    const doc = JSON.parse(run.stdout) as InitDocument;
    const file = join(dir, 'printed.config.json');
    writeFileSync(file, JSON.stringify({ targets: [doc.target] }));

    expect(run.code).toBe(0);
    expect(doc.discovered).toMatchObject({
      instanceId: seeded.oldInstanceId,
      imageId: seeded.oldImageId,
      subnetId: seeded.subnetId,
      architecture: 'x86_64',
      extraVolumes: [],
      terraformAddress: DEMO_TERRAFORM.instanceAddress,
    });
    expect(doc.target).toMatchObject({
      name: 'web',
      allocationId: seeded.allocationId,
      domain: 'web.example.test',
      image: { imageId: seeded.oldImageId },
      terraform: {
        state: STATE_URL,
        instanceAddress: DEMO_TERRAFORM.instanceAddress,
        region: world.account.sandbox.region,
        useLockfile: true,
        dynamodbTable: DEMO_TERRAFORM.table,
      },
    });
    expect(doc.warnings.some((w) => w.startsWith('image:'))).toBe(true);
    expect(loadConfig(file).targets).toEqual([doc.target]);
    expect(world.account.sandbox.calls.slice(mark).map((c) => c.action)).toEqual(
      expect.arrayContaining(['DescribeAddresses', 'DescribeInstances', 'DescribeImages', 'GetObject']),
    );
    expect(changesSince(mark)).toEqual([]);
  });

  it('without --json prints the target alone on stdout and what it found on stderr', async () => {
    const { seeded } = world.account.deployment;

    const run = await init([
      'web',
      '--eip',
      seeded.allocationId,
      '--domain',
      'web.example.test',
      '--image-parameter',
      '/golden/web/ami',
    ]);
    const target = JSON.parse(run.stdout) as InitDocument['target'];
    const base = ['web', '--eip', seeded.allocationId, '--domain', 'web.example.test'];
    const built = await init([...base, '--build', 'debian-12']);
    const both = await init([...base, '--build', 'debian-12', '--image-parameter', '/golden/web/ami']);

    expect(run.code).toBe(0);
    expect(target.image).toEqual({ ssmParameter: '/golden/web/ami' });
    expect(target.terraform).toBeUndefined();
    expect(run.stderr).toContain(`${seeded.allocationId} (${seeded.publicIp}) → ${seeded.oldInstanceId}`);
    expect(run.stderr).toContain('terraform   not managed');
    expect(built.code).toBe(0);
    expect((JSON.parse(built.stdout) as InitDocument['target']).image).toMatchObject({
      build: { parentImage: 'debian-12', architecture: 'x86_64', instanceTypes: ['t3.small'] },
    });
    expect(both.code).toBe(1);
    expect(both.stderr).toContain('--build: choose one image source');
  });

  it('--write adds the target to the config file and keeps the other targets; a second write needs --force', async () => {
    const { seeded } = world.account.deployment;
    const file = join(dir, 'understudy.config.json');
    const example = JSON.parse(readFileSync('understudy.config.example.json', 'utf8')) as {
      targets: { name: string }[];
    };
    const others = example.targets.filter((t) => t.name !== 'web');
    writeFileSync(file, JSON.stringify({ ...example, targets: others }, null, 2));
    const args = [
      'web',
      '--eip',
      seeded.allocationId,
      '--domain',
      'web.example.test',
      '--state',
      STATE_URL,
      '--write',
      file,
    ];

    const added = await init(args);
    const afterAdd = readFileSync(file, 'utf8');
    const again = await init([...args, '--domain', 'www.example.test']);
    const afterRefusal = readFileSync(file, 'utf8');
    const forced = await init([...args, '--domain', 'www.example.test', '--force']);
    const config = loadConfig(file);

    expect(added.code).toBe(0);
    expect(added.stdout).toBe(`added target web in ${file}\n`);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/--force: .*already has a target "web"/);
    expect(afterRefusal).toBe(afterAdd);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toBe(`replaced target web in ${file}\n`);
    expect(config.targets.map((t) => t.name)).toEqual([...others.map((t) => t.name), 'web']);
    expect((JSON.parse(readFileSync(file, 'utf8')) as { targets: unknown[] }).targets.slice(0, -1)).toEqual(
      others,
    );
    expect(config.targets.at(-1)).toMatchObject({
      domain: 'www.example.test',
      terraform: { instanceAddress: DEMO_TERRAFORM.instanceAddress },
    });
  });

  it('refuses an unknown allocation and an unassociated EIP with exit 1, naming --eip', async () => {
    // EC2 disassociates an EIP from an instance that is terminated: the address stays allocated, unused.
    const spare = await world.account.sandbox.seedTarget({
      name: 'spare',
      domain: 'spare.example.test',
      certificate: false,
    });
    await ec2Client().send(new TerminateInstancesCommand({ InstanceIds: [spare.oldInstanceId] }));
    await until(() => world.account.sandbox.eipInstance(spare.allocationId) === undefined);
    const mark = world.account.sandbox.calls.length;

    const unknown = await init(['web', '--eip', 'eipalloc-0123456789abcdef0', '--domain', 'a.example.com']);
    const unassociated = await init([
      'web',
      '--eip',
      spare.allocationId,
      '--domain',
      'a.example.com',
      '--json',
    ]);
    const malformed = await init(['web', '--eip', 'eip-1', '--domain', 'a.example.com']);

    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/--eip: no Elastic IP eipalloc-0123456789abcdef0/);
    expect(unassociated.code).toBe(1);
    expect(JSON.parse(unassociated.stdout)).toMatchObject({
      command: 'init',
      error: {
        exitCode: 1,
        field: '--eip',
        message: expect.stringMatching(/is not associated with an instance/),
      },
    });
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toContain('--eip: use the Elastic IP');
    expect(changesSince(mark)).toEqual([]);
  });

  it('reads a local state file (with --backend for the config) and refuses, naming --state, a state without the instance or with it twice', async () => {
    const { seeded } = world.account.deployment;
    const state = await sandboxState();
    const instance = state.resources.find((r) => r.type === 'aws_instance');
    const pulled = writeState('pulled.tfstate', state);
    const without = writeState('other.tfstate', {
      ...state,
      resources: state.resources.filter((r) => r.type !== 'aws_instance'),
    });
    const twice = writeState('twice.tfstate', {
      ...state,
      resources: [...state.resources, { ...instance, name: 'copy' }],
    });
    const base = ['web', '--eip', seeded.allocationId, '--domain', 'web.example.test'];

    const found = await init([...base, '--state', pulled, '--backend', STATE_URL, '--json']);
    const missing = await init([...base, '--state', without, '--backend', STATE_URL]);
    const several = await init([...base, '--state', twice, '--backend', STATE_URL]);
    const noBackend = await init([...base, '--state', pulled]);
    const noObject = await init([...base, '--state', `s3://${DEMO_TERRAFORM.bucket}/nothing/here.tfstate`]);

    expect(found.code).toBe(0);
    expect((JSON.parse(found.stdout) as InitDocument).target.terraform).toMatchObject({
      state: STATE_URL,
      instanceAddress: DEMO_TERRAFORM.instanceAddress,
    });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      `--state: no aws_instance in ${without} has the id ${seeded.oldInstanceId}`,
    );
    expect(several.code).toBe(1);
    expect(several.stderr).toMatch(
      /--state: several aws_instance addresses .*module\.web\.aws_instance\.copy/,
    );
    expect(noBackend.code).toBe(1);
    expect(noBackend.stderr).toContain('--backend: the config names the S3 backend');
    expect(noObject.code).toBe(1);
    expect(noObject.stderr).toContain('--state: there is no state at');
  });

  it('warns about dataVolumes when the server has an extra volume, and refuses a missing --domain', async () => {
    const db = await world.account.sandbox.seedTarget({
      name: 'db',
      domain: 'db.example.test',
      dataVolume: true,
      certificate: false,
    });

    const run = await init(['db', '--eip', db.allocationId, '--domain', 'db.example.test', '--json']);
    const fresh = await init([
      'db',
      '--eip',
      db.allocationId,
      '--domain',
      'db.example.test',
      '--data-volumes',
      'fresh',
      '--json',
    ]);
    const noDomain = await init(['db', '--eip', db.allocationId]);
    const doc = JSON.parse(run.stdout) as InitDocument;

    expect(run.code).toBe(0);
    expect(doc.discovered.extraVolumes).toHaveLength(1);
    expect(doc.target.dataVolumes).toBe('refuse');
    expect(doc.warnings.some((w) => w.startsWith('dataVolumes:'))).toBe(true);
    expect((JSON.parse(fresh.stdout) as InitDocument).target.dataVolumes).toBe('fresh');
    expect(
      (JSON.parse(fresh.stdout) as InitDocument).warnings.some((w) => w.startsWith('dataVolumes:')),
    ).toBe(false);
    expect(noDomain.code).toBe(1);
    expect(noDomain.stderr).toContain('--domain: name the DNS name');
  });
});
