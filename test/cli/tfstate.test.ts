import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runTfstate } from '../../bin/tfstate';
import { createClients } from '../../lambdas/shared/clients';
import { lockIdFor } from '../../lambdas/shared/tfstate/s3-lock';
import { Sandbox } from '../../sandbox/index';

const ROOT = join(__dirname, '..', '..');
const FIXTURES = join(__dirname, '..', 'fixtures', 'tfstate', 'cli');
const OLD = 'i-0a1b2c3d4e5f60718';
const NEW = 'i-0f9e8d7c6b5a43210';

interface Resource {
  module?: string;
  type: string;
  name: string;
  instances: {
    attributes: Record<string, unknown>;
    identity?: Record<string, unknown>;
    dependencies?: string[];
  }[];
}
interface State {
  serial: number;
  lineage: string;
  outputs: Record<string, { value: unknown }>;
  resources: Resource[];
}

/** A temp directory holding a copy of the fixture state and the describe outputs of the new instance. */
const workspace = (stateFixture = 'terraform.tfstate') => {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-tfstate-'));
  const state = join(dir, 'terraform.tfstate');
  copyFileSync(join(FIXTURES, stateFixture), state);
  return {
    dir,
    state,
    original: readFileSync(state),
    files: () => readdirSync(dir).sort(),
    read: () => JSON.parse(readFileSync(state, 'utf8')) as State,
  };
};

const reconcileArgs = (state: string, ...extra: string[]) => [
  'reconcile',
  '--state',
  state,
  '--instance',
  join(FIXTURES, 'describe-instances.json'),
  '--address',
  join(FIXTURES, 'describe-addresses.json'),
  '--volumes',
  join(FIXTURES, 'describe-volumes.json'),
  '--instance-address',
  'module.web.aws_instance.this',
  ...extra,
];

const resource = (state: State, address: string): Resource | undefined =>
  state.resources.find((r) => [...(r.module ? [r.module] : []), `${r.type}.${r.name}`].join('.') === address);

describe('understudy tfstate reconcile on a local file', () => {
  it('writes the new instance into the state with serial + 1 and keeps the previous file as <file>.<serial>.backup', async () => {
    const ws = workspace();

    const result = await runTfstate(reconcileArgs(ws.state, '--expect-instance', OLD));

    expect(result).toMatchObject({ code: 0, stderr: '' });
    const state = ws.read();
    expect(state.serial).toBe(42);
    expect(resource(state, 'module.web.aws_instance.this')?.instances[0]?.attributes.id).toBe(NEW);
    expect(resource(state, 'module.web.aws_instance.this')?.instances[0]?.identity?.id).toBe(NEW);
    expect(resource(state, 'aws_eip.web')?.instances[0]?.attributes.instance).toBe(NEW);
    expect(state.outputs.instance_id?.value).toBe(NEW);
    expect(ws.files()).toEqual(['terraform.tfstate', 'terraform.tfstate.41.backup']);
    expect(readFileSync(join(ws.dir, 'terraform.tfstate.41.backup')).equals(ws.original)).toBe(true);
    expect(result.stdout).toContain(`wrote ${ws.state} (serial 41 -> 42); backup: ${ws.state}.41.backup`);
  });

  it('says "already reconciled" on a second run, exits 0 and leaves the file and its backups as they were', async () => {
    const ws = workspace();
    await runTfstate(reconcileArgs(ws.state));
    const afterFirst = readFileSync(ws.state);

    const second = await runTfstate(reconcileArgs(ws.state, '--expect-instance', OLD));

    expect(second.code).toBe(0);
    expect(second.stdout).toContain('already reconciled');
    expect(readFileSync(ws.state).equals(afterFirst)).toBe(true);
    expect(ws.files()).toEqual(['terraform.tfstate', 'terraform.tfstate.41.backup']);
  });

  it('writes nothing with --dry-run and says which serial it would write', async () => {
    const ws = workspace();

    const result = await runTfstate(reconcileArgs(ws.state, '--dry-run'));

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('dry run: would write serial 42 (now 41); nothing written');
    expect(readFileSync(ws.state).equals(ws.original)).toBe(true);
    expect(ws.files()).toEqual(['terraform.tfstate']);
  });

  it('refuses with one line when the state names another instance than --expect-instance, and writes nothing', async () => {
    const ws = workspace();

    const result = await runTfstate(reconcileArgs(ws.state, '--expect-instance', 'i-0123456789abcdef0'));

    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^refused: [^\n]*i-0123456789abcdef0[^\n]*\n$/);
    expect(readFileSync(ws.state).equals(ws.original)).toBe(true);
    expect(ws.files()).toEqual(['terraform.tfstate']);
  });

  it('refuses an address that is not in the state with one line, writing nothing', async () => {
    const ws = workspace();
    const args = reconcileArgs(ws.state);
    args[args.indexOf('module.web.aws_instance.this')] = 'module.api.aws_instance.this';

    const result = await runTfstate(args);

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^refused: [^\n]*module\.api\.aws_instance\.this[^\n]*\n$/);
    expect(readFileSync(ws.state).equals(ws.original)).toBe(true);
  });

  it('refuses a format 3 state (Terraform 0.11) with one line naming the version, and writes nothing', async () => {
    const ws = workspace('terraform-v3.tfstate');

    const result = await runTfstate(reconcileArgs(ws.state));

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^refused: [^\n]*version 3[^\n]*\n$/);
    expect(readFileSync(ws.state).equals(ws.original)).toBe(true);
    expect(ws.files()).toEqual(['terraform.tfstate']);
  });

  it('writes to --out and leaves the --state file untouched, without a backup', async () => {
    const ws = workspace();
    const out = join(ws.dir, 'reconciled.tfstate');

    const result = await runTfstate(reconcileArgs(ws.state, '--out', out));

    expect(result.code).toBe(0);
    expect(readFileSync(ws.state).equals(ws.original)).toBe(true);
    expect(ws.files()).toEqual(['reconciled.tfstate', 'terraform.tfstate']);
    expect((JSON.parse(readFileSync(out, 'utf8')) as State).serial).toBe(42);
  });

  it('keeps the permission bits of a 0600 state on the new file and on its backup', async () => {
    const ws = workspace();
    chmodSync(ws.state, 0o600);

    await runTfstate(reconcileArgs(ws.state));

    expect(statSync(ws.state).mode & 0o777).toBe(0o600);
    expect(statSync(`${ws.state}.41.backup`).mode & 0o777).toBe(0o600);
  });

  it('prints the outcome, serials, backup and report as JSON with --json', async () => {
    const ws = workspace();

    const result = await runTfstate(reconcileArgs(ws.state, '--json'));
    const printed = JSON.parse(result.stdout) as Record<string, unknown> & {
      report: Record<string, unknown>;
    };

    expect(result.code).toBe(0);
    expect(printed).toMatchObject({
      command: 'reconcile',
      outcome: 'written',
      state: ws.state,
      written: ws.state,
      backup: `${ws.state}.41.backup`,
      serialBefore: '41',
      serialAfter: '42',
      alreadyReconciled: false,
      warnings: [],
    });
    expect(printed.report).toMatchObject({
      instanceAddress: 'module.web.aws_instance.this',
      oldInstanceId: OLD,
      newInstanceId: NEW,
      alreadyReconciled: false,
    });
    // The alarm's dimension names the old instance until the next apply: the report must say so.
    expect(printed.report.stillMentioning).toEqual(
      expect.arrayContaining([expect.objectContaining({ address: 'aws_cloudwatch_metric_alarm.cpu' })]),
    );
  });

  it('prints a refusal as JSON too, with the reason, when --json is given', async () => {
    const ws = workspace('terraform-v3.tfstate');

    const result = await runTfstate(reconcileArgs(ws.state, '--json'));

    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({
      command: 'reconcile',
      outcome: 'refused',
      reason: 'UnsupportedState',
    });
  });

  it('refuses describe output that is not JSON before reading the state', async () => {
    const ws = workspace();
    const bad = join(ws.dir, 'bad.json');
    writeFileSync(bad, 'An error occurred (UnauthorizedOperation)');
    const args = reconcileArgs(ws.state);
    args[args.indexOf(join(FIXTURES, 'describe-instances.json'))] = bad;

    const result = await runTfstate(args);

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^refused: [^\n]*bad\.json is not JSON[^\n]*\n$/);
    expect(readFileSync(ws.state).equals(ws.original)).toBe(true);
  });
});

describe('understudy tfstate mv on a local file', () => {
  it('moves a resource into a module, re-sorts the resources the way Terraform does and writes serial + 1', async () => {
    const ws = workspace();

    const result = await runTfstate([
      'mv',
      'aws_cloudwatch_metric_alarm.cpu',
      'module.monitoring.aws_cloudwatch_metric_alarm.cpu',
      '--state',
      ws.state,
    ]);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain(
      'Move "aws_cloudwatch_metric_alarm.cpu" to "module.monitoring.aws_cloudwatch_metric_alarm.cpu"',
    );
    const state = ws.read();
    expect(state.serial).toBe(42);
    expect(state.resources.map((r) => `${r.module ?? ''}/${r.type}.${r.name}`)).toEqual([
      '/aws_eip.web',
      'module.monitoring/aws_cloudwatch_metric_alarm.cpu',
      'module.web/aws_instance.this',
    ]);
    expect(ws.files()).toEqual(['terraform.tfstate', 'terraform.tfstate.41.backup']);
  });

  it('prints the moves as JSON and writes nothing with --dry-run --json', async () => {
    const ws = workspace();

    const result = await runTfstate([
      'mv',
      'module.web',
      'module.web_old',
      '--state',
      ws.state,
      '--dry-run',
      '--json',
    ]);

    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      command: 'mv',
      outcome: 'dry-run',
      written: null,
      backup: null,
      serialBefore: '41',
      serialAfter: '42',
      moved: [{ from: 'module.web', to: 'module.web_old' }],
    });
    expect(readFileSync(ws.state).equals(ws.original)).toBe(true);
    expect(ws.files()).toEqual(['terraform.tfstate']);
  });

  it('refuses to move onto an address that exists, with one line, writing nothing', async () => {
    const ws = workspace();

    const result = await runTfstate([
      'mv',
      'aws_eip.web',
      'aws_cloudwatch_metric_alarm.cpu',
      '--state',
      ws.state,
    ]);

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^refused: [^\n]+\n$/);
    expect(readFileSync(ws.state).equals(ws.original)).toBe(true);
  });
});

describe('understudy tfstate reconcile on s3:// (sandbox account)', () => {
  let sandbox: Sandbox | undefined;
  afterEach(async () => {
    await sandbox?.stop();
    sandbox = undefined;
  });

  it('locks, backs up, writes serial + 1 and the -md5 digest in the workspace object, and releases both locks', async () => {
    sandbox = await Sandbox.start();
    const aws = createClients();
    const objectKey = 'env:/prod/web/terraform.tfstate';
    const original = readFileSync(join(FIXTURES, 'terraform.tfstate'));
    const md5 = (bytes: Buffer | string) => createHash('md5').update(bytes).digest('hex');
    sandbox.createBucket('tfstate');
    sandbox.createTable('tf-locks', 'LockID');
    sandbox.s3.seedObject('tfstate', objectKey, original, { contentType: 'application/json' });
    sandbox.dynamodb.seedItem('tf-locks', {
      LockID: { S: `tfstate/${objectKey}-md5` },
      Digest: { S: md5(original) },
    });

    const result = await runTfstate(
      reconcileArgs(
        's3://tfstate/web/terraform.tfstate',
        '--workspace',
        'prod',
        '--dynamodb-table',
        'tf-locks',
        '--expect-instance',
        OLD,
        '--json',
      ),
      { remoteClients: () => ({ s3: aws.s3, dynamodb: aws.dynamodb }) },
    );

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as { outcome: string; written: string; backup: string };
    expect(printed).toMatchObject({
      outcome: 'written',
      written: `s3://tfstate/${objectKey}`,
      serialBefore: '41',
      serialAfter: '42',
    });
    const written = sandbox.s3.details('tfstate', objectKey);
    expect((JSON.parse(written?.body ?? '{}') as State).serial).toBe(42);
    const backupKey = printed.backup.replace('s3://tfstate/', '');
    expect(sandbox.s3.details('tfstate', backupKey)?.bytes.equals(original)).toBe(true);
    expect(sandbox.dynamodb.item('tf-locks', `S:tfstate/${objectKey}-md5`)?.Digest).toEqual({
      S: md5(written?.bytes ?? ''),
    });
    expect(sandbox.s3.keys('tfstate').filter((key) => key.endsWith('.tflock'))).toEqual([]);
    expect(sandbox.dynamodb.keys('tf-locks')).toEqual([`S:tfstate/${objectKey}-md5`]);
  });
  it('refuses with one line naming the holder when a Terraform user holds the lock past --lock-timeout, and writes nothing', async () => {
    sandbox = await Sandbox.start();
    const aws = createClients();
    const original = readFileSync(join(FIXTURES, 'terraform.tfstate'));
    sandbox.createBucket('tfstate');
    const etag = sandbox.s3.seedObject('tfstate', 'web/terraform.tfstate', original, {
      contentType: 'application/json',
    });
    const lockInfo = JSON.stringify({
      ID: '5c2bd5a0-3b1e-4f5e-9a7c-0d9e8f7a6b5c',
      Operation: 'OperationTypeApply',
      Info: '',
      Who: 'alice@laptop',
      Version: '1.13.1',
      Created: '2026-11-26T08:00:00.123456789Z',
      Path: 'tfstate/web/terraform.tfstate',
    });
    sandbox.s3.seedObject('tfstate', 'web/terraform.tfstate.tflock', lockInfo, {
      contentType: 'application/json',
    });

    const result = await runTfstate(
      reconcileArgs('s3://tfstate/web/terraform.tfstate', '--lock-timeout', '3'),
      {
        remoteClients: () => ({ s3: aws.s3 }),
      },
    );

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^refused: [^\n]*alice@laptop[^\n]*\n$/);
    expect(sandbox.s3.details('tfstate', 'web/terraform.tfstate')?.etag).toBe(etag);
    expect(sandbox.s3.object('tfstate', 'web/terraform.tfstate.tflock')?.body).toBe(lockInfo);
    expect(sandbox.s3.keys('tfstate')).toEqual(['web/terraform.tfstate', 'web/terraform.tfstate.tflock']);
  });
});

describe('continuing a workflow run by hand (--run-id)', () => {
  let sandbox: Sandbox;
  afterEach(async () => {
    await sandbox.stop();
  });
  const RUN = 'arn:aws:states:eu-west-1:111122223333:execution:Understudy-Replace:web-2026-11-26';
  const seedLeftLock = () => {
    sandbox.createBucket('tfstate');
    sandbox.s3.seedObject(
      'tfstate',
      'web/terraform.tfstate',
      readFileSync(join(FIXTURES, 'terraform.tfstate')),
      {
        contentType: 'application/json',
      },
    );
    // What a Reconcile step that died mid-way leaves: its lock, with a lease that has not run out.
    sandbox.s3.seedObject(
      'tfstate',
      'web/terraform.tfstate.tflock',
      JSON.stringify({
        ID: lockIdFor(RUN),
        Operation: 'understudy-reconcile',
        Info: JSON.stringify({ understudy: { runId: RUN, leaseExpires: '2999-01-01T00:00:00.000Z' } }),
        Who: 'understudy@web-2026-11-26',
        Version: '0.1.0',
        Created: '2026-11-26T08:00:00.123456789Z',
        Path: 'tfstate/web/terraform.tfstate',
      }),
      { contentType: 'application/json' },
    );
  };

  it('re-enters the lock that run left and finishes the reconcile, releasing the lock', async () => {
    sandbox = await Sandbox.start();
    const aws = createClients();
    seedLeftLock();

    const result = await runTfstate(
      reconcileArgs('s3://tfstate/web/terraform.tfstate', '--lock-timeout', '0', '--run-id', RUN),
      { remoteClients: () => ({ s3: aws.s3 }) },
    );

    expect(result.stderr).toContain("re-entered this run's own lock file");
    expect(result.code).toBe(0);
    expect(sandbox.s3.keys('tfstate').filter((key) => key.endsWith('.tflock'))).toEqual([]);
  });

  it('without the run id, is refused by that lock like anyone else', async () => {
    sandbox = await Sandbox.start();
    const aws = createClients();
    seedLeftLock();

    const result = await runTfstate(
      reconcileArgs('s3://tfstate/web/terraform.tfstate', '--lock-timeout', '0'),
      { remoteClients: () => ({ s3: aws.s3 }) },
    );

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^refused: [^\n]*understudy@web-2026-11-26/);
  });
});

describe('npx understudy tfstate (whole process)', () => {
  it('is registered in the CLI: a reconcile through bin/cli.ts exits 0 and writes the state', async () => {
    const ws = workspace();

    const { stdout } = await promisify(execFile)(
      'npx',
      ['tsx', 'bin/cli.ts', 'tfstate', ...reconcileArgs(ws.state)],
      {
        cwd: ROOT,
      },
    );

    expect(stdout).toContain('(serial 41 -> 42)');
    expect(ws.read().serial).toBe(42);
  });

  it('exits non-zero with one line on a refusal', async () => {
    const ws = workspace('terraform-v3.tfstate');

    const failure = await promisify(execFile)(
      'npx',
      ['tsx', 'bin/cli.ts', 'tfstate', ...reconcileArgs(ws.state)],
      {
        cwd: ROOT,
      },
    ).catch((error: { code: number; stderr: string }) => error);

    expect((failure as { code: number }).code).toBe(1);
    expect((failure as { stderr: string }).stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});
