import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { certificateScript } from '../../lambdas/certificate/certificate';
import { packScript } from '../../lambdas/pack-certificate/pack-certificate';
import { prepareScript } from '../../lambdas/prepare/prepare';
import { checkCommand } from '../../lambdas/rollback/rollback';
import { clients, dynamodbClient } from '../../lambdas/shared/clients';
import { ConfigError, type TargetConfig, TargetNameSchema, TargetSchema } from '../../lambdas/shared/config';
import { parameterNames } from '../../lambdas/shared/constants';
import { logger } from '../../lambdas/shared/logger';
import { manualReconcileCommand } from '../../lambdas/shared/tfstate/manual';
import { handler as signalHandler } from '../../lambdas/signal/handler';
import { loadConfig } from '../../lib/config-loader';
import type { CallRecord } from '../../sandbox/contracts';
import { SANDBOX_ENV } from '../../sandbox/demo';
import { DEMO_TERRAFORM } from '../../sandbox/terraform';
import { lambdaContext } from '../fixtures/aws';
import { recordedCalls, recorder, runScript } from '../lambdas/ssm-steps.fixture';
import { startWorld, type World } from '../workflow/helpers';
import { AWAITED_INSTANCE, baseConfig, CORPUS, type CorpusEntry, type CorpusKind, entriesOf } from './corpus';

/**
 * Issue 5, scopes 2 and 6. Every corpus entry goes through the real entry point on the sandbox account
 * and must be refused with a message that names the field, having changed nothing: the only writes a
 * refused run may make are its own run record and its one outcome message. Then the values that reach
 * SSM shell scripts are shown to arrive as single literal arguments, whatever they contain.
 */

// The stack's rule for replacement requests (lib/event-routing.ts REQUEST_SOURCE / REQUEST_DETAIL_TYPE),
// spelled out here so this suite does not load the CDK library for two strings.
const REQUEST_SOURCE = 'understudy';
const REQUEST_DETAIL_TYPE = 'Replacement Requested';

const ARTICLE: Record<CorpusKind, string> = {
  'execution input': 'refuses an execution input',
  'Replacement Requested event': 'refuses a Replacement Requested event',
  'deployed target configuration': 'refuses a run on a deployed target configuration',
  'agent event': 'ignores an agent event',
  'config file': 'refuses a config file',
  'Terraform instance address': 'refuses, before anything is launched, a Terraform instance address',
};
/** One jest test per entry, named as a sentence. */
const rows = (kind: CorpusKind, tail = '') =>
  entriesOf(kind).map(
    (entry) => [`${ARTICLE[kind]} ${entry.name}, naming ${entry.expectField}${tail}`, entry] as const,
  );

/** The call log's position before the part under test, so setup calls and arrangements do not count. */
const lastSeq = (world: World): number => world.sandbox.calls.at(-1)?.seq ?? -1;

const inputOf = (call: CallRecord): Record<string, unknown> =>
  typeof call.input === 'object' && call.input !== null ? (call.input as Record<string, unknown>) : {};

/** Every S3 key, SSM parameter name and prefix a call named. */
const namesIn = (calls: readonly CallRecord[]): string[] =>
  calls.flatMap((call) => {
    const input = inputOf(call);
    return [input.Key, input.Name, input.Prefix, ...(Array.isArray(input.Names) ? input.Names : [])].filter(
      (v): v is string => typeof v === 'string',
    );
  });

let world: World | undefined;
afterEach(async () => {
  jest.restoreAllMocks();
  await world?.stop();
  world = undefined;
});

/**
 * A refused run: failed with InvalidInput or PreflightRefused, the field named in the execution's cause
 * and in the one outcome message, and nothing written but the run record (under a valid target name or
 * `_invalid-target`) and that message. No lock, no tag, no parameter, no instance.
 */
const expectRefusedChangingNothing = (
  current: World,
  run: Awaited<ReturnType<World['run']>>,
  entry: CorpusEntry,
  mark: number,
  request: (call: CallRecord) => boolean = () => false,
) => {
  expect(run.status).toBe('FAILED');
  expect(run.outcome).toBe('failed');
  expect(['InvalidInput', 'PreflightRefused']).toContain(run.error);
  expect(run.cause).toContain(entry.expectField);
  if (entry.expectMessage) expect(run.cause).toContain(entry.expectMessage);

  const outcomes = current.sandbox.messages.filter((m) => m.attributes.kind === 'outcome');
  expect(outcomes).toHaveLength(1);
  expect(outcomes[0]?.message).toContain(entry.expectField);
  expect(outcomes[0]?.attributes.target).toMatch(/^(?:[a-z0-9-]+|_invalid-target)$/);

  const recordKey = (run.outputs.Finish as { finish?: { recordKey?: string } } | undefined)?.finish
    ?.recordKey;
  expect(recordKey).toMatch(/^runs\/(?:[a-z0-9-]+|_invalid-target)\/[^/]+\.json$/);
  const isRecord = (c: CallRecord) =>
    c.service === 's3' &&
    c.action === 'PutObject' &&
    inputOf(c).Bucket === SANDBOX_ENV.RUNS_BUCKET &&
    inputOf(c).Key === recordKey;
  const isOutcome = (c: CallRecord) =>
    c.service === 'sns' && c.action === 'Publish' && inputOf(c).Subject !== undefined;
  const writes = current.mutatingCalls((c) => c.seq > mark && !request(c));
  expect(writes.filter((c) => !isRecord(c) && !isOutcome(c))).toEqual([]);
  expect(writes.filter(isOutcome)).toHaveLength(1);
  expect(current.sandbox.objectKeys(SANDBOX_ENV.RUNS_BUCKET).filter((k) => k.startsWith('locks/'))).toEqual(
    [],
  );

  // A hostile target name reaches no S3 key and no parameter name, not even in a read.
  const target = entry.input.target;
  if (typeof target === 'string' && target !== '' && !TargetNameSchema.safeParse(target).success) {
    const touched = namesIn(current.sandbox.calls.filter((c) => c.seq > mark));
    expect(touched.filter((name) => name.includes(target))).toEqual([]);
  }
};

describe('bad execution inputs, started through the workflow', () => {
  it('lets a well-formed dry run through the same harness, so each refusal below is the input’s doing', async () => {
    world = await startWorld();
    const run = await world.run({ target: 'web', dryRun: true });

    expect(run.status).toBe('SUCCEEDED');
    expect(world.mutatingCalls((c) => c.service === 'ec2' || c.service === 'ssm')).toEqual([]);
  });

  it.each([...rows('execution input'), ...rows('deployed target configuration')])(
    '%s',
    async (_title, entry) => {
      world = await startWorld(entry.world);
      const extra = (await entry.arrange?.(world)) ?? {};
      const mark = lastSeq(world);

      const run = await world.run({ ...entry.input, ...extra });

      expectRefusedChangingNothing(world, run, entry, mark);
    },
  );
});

describe('bad Replacement Requested events on the Understudy bus', () => {
  /** The stack's request rule: the event's detail becomes the execution input. */
  const wireRequests = (current: World) => {
    const runs: ReturnType<World['run']>[] = [];
    current.sandbox.addRule(
      SANDBOX_ENV.EVENT_BUS_NAME,
      { source: [REQUEST_SOURCE], 'detail-type': [REQUEST_DETAIL_TYPE] },
      async (event) => {
        runs.push(current.run((event as { detail: Record<string, unknown> }).detail));
      },
    );
    return runs;
  };
  const request = async (current: World, detail: Record<string, unknown>) => {
    const runs = wireRequests(current);
    const put = await clients().events.send(
      new PutEventsCommand({
        Entries: [
          {
            EventBusName: SANDBOX_ENV.EVENT_BUS_NAME,
            Source: REQUEST_SOURCE,
            DetailType: REQUEST_DETAIL_TYPE,
            Detail: JSON.stringify(detail),
          },
        ],
      }),
    );
    // EventBridge accepted it: any refusal is Understudy's.
    expect(put.FailedEntryCount).toBe(0);
    await current.sandbox.clock.sleep(1);
    expect(runs).toHaveLength(1);
    return (await runs[0]) as Awaited<ReturnType<World['run']>>;
  };
  const isRequest = (c: CallRecord) => c.service === 'events' && c.action === 'PutEvents';

  it('starts a run from a well-formed request (a dry run), so each refusal below is the detail’s doing', async () => {
    world = await startWorld();
    const run = await request(world, { target: 'web', dryRun: true });

    expect(run.status).toBe('SUCCEEDED');
  });

  it.each(rows('Replacement Requested event'))('%s', async (_title, entry) => {
    world = await startWorld(entry.world);
    const mark = lastSeq(world);

    const run = await request(world, entry.input);

    expectRefusedChangingNothing(world, run, entry, mark, isRequest);
  });
});

describe('bad agent events on the Understudy bus', () => {
  const TOKEN = 'sandbox-token-awaited-readiness';

  /** The readiness task of AWAITED_INSTANCE is open: await-readiness stored its token. */
  const openTask = async (current: World) => {
    let settled = false;
    current.sandbox.registerTaskToken(TOKEN).then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    await clients().ssm.send(
      new PutParameterCommand({
        Name: parameterNames(SANDBOX_ENV.PARAMETER_PREFIX).token(AWAITED_INSTANCE),
        Type: 'SecureString',
        Value: JSON.stringify({ token: TOKEN, onRecoverableErrors: 'fail' }),
      }),
    );
    return () => settled;
  };
  const put = async (current: World, event: Record<string, unknown>) => {
    const out = await clients().events.send(
      new PutEventsCommand({
        Entries: [
          {
            EventBusName: SANDBOX_ENV.EVENT_BUS_NAME,
            Source: event.Source as string,
            DetailType: event.DetailType as string,
            Detail: JSON.stringify(event.Detail),
          },
        ],
      }),
    );
    expect(out.FailedEntryCount).toBe(0);
    // Delivery is asynchronous, as on the real bus; the signal function retries nothing here.
    await current.sandbox.clock.sleep(1_000);
  };

  it('heartbeats the open task on a well-formed progress event, so the task below is really awaited', async () => {
    world = await startWorld();
    await openTask(world);
    const mark = lastSeq(world);

    await put(world, {
      Source: 'understudy.agent',
      DetailType: 'Instance Progress',
      Detail: { instanceId: AWAITED_INSTANCE, status: 'running' },
    });

    expect(world.mutatingCalls((c) => c.seq > mark && c.action === 'SendTaskHeartbeat')).toHaveLength(1);
  });

  it.each(rows('agent event', ', and changes nothing'))('%s', async (_title, entry) => {
    world = await startWorld();
    const settled = await openTask(world);
    const warn = jest.spyOn(logger, 'warn');
    const mark = lastSeq(world);

    await put(world, entry.input);
    // The same event handed to the function directly, as if a broader rule had let it through.
    const direct = await signalHandler(
      {
        version: '0',
        id: 'corpus',
        source: entry.input.Source,
        'detail-type': entry.input.DetailType,
        account: world.sandbox.accountId,
        time: new Date().toISOString(),
        region: world.sandbox.region,
        resources: [],
        detail: entry.input.Detail,
      },
      lambdaContext('understudy-signal'),
    );

    expect(direct).toEqual({ action: 'ignored' });
    const calls = world.sandbox.calls.filter((c) => c.seq > mark);
    expect(calls.filter((c) => c.mutating && c.action !== 'PutEvents')).toEqual([]);
    expect(calls.filter((c) => c.service === 'sfn')).toEqual([]);
    expect(settled()).toBe(false);
    const warnings = warn.mock.calls.map((args) => JSON.stringify(args));
    expect(warnings.some((w) => w.includes(entry.expectField))).toBe(true);
  });
});

describe('bad config files, loaded as cdk synth and `understudy config validate` load them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-corpus-'));
  const problemsOf = (config: unknown, name: string): string[] => {
    const file = join(dir, `${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 80)}.json`);
    writeFileSync(file, JSON.stringify(config));
    try {
      loadConfig(file);
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    return [];
  };

  it('accepts the base config every entry below changes in one place', () => {
    expect(problemsOf(baseConfig(), 'base')).toEqual([]);
  });

  it.each(rows('config file'))('%s', (_title, entry) => {
    const problems = problemsOf(entry.input, entry.name);

    const named = problems.filter((p) => p.startsWith(`${entry.expectField}: `));
    expect(named).not.toEqual([]);
    if (entry.expectMessage) {
      expect(named.some((p) => p.includes(entry.expectMessage as string))).toBe(true);
    }
  });
});

describe('a Terraform instance address the state does not hold', () => {
  const { bucket, key, table } = DEMO_TERRAFORM;
  const stateText = async () => {
    const out = await clients().s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return out.Body?.transformToString();
  };
  const exists = async (objectKey: string) =>
    clients()
      .s3.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }))
      .then(
        () => true,
        () => false,
      );

  it.each(rows('Terraform instance address', ', and leaves the state byte-identical'))(
    '%s',
    async (_title, entry) => {
      world = await startWorld(entry.world);
      const before = await stateText();
      const mark = lastSeq(world);

      const run = await world.run(entry.input);

      // A replacement whose state could not be reconciled afterwards is refused up front (preflight).
      expectRefusedChangingNothing(world, run, entry, mark);
      expect(run.timeline.some((e) => e.state === 'Launch')).toBe(false);
      expect(await stateText()).toBe(before);
      expect(await exists(`${key}.tflock`)).toBe(false);
      const lockItem = await dynamodbClient().send(
        new GetItemCommand({
          TableName: table,
          Key: { LockID: { S: `${bucket}/${key}` } },
          ConsistentRead: true,
        }),
      );
      expect(lockItem.Item).toBeUndefined();
    },
  );
});

describe('shell safety: values that reach SSM shell scripts arrive as one literal argument', () => {
  const canaries = mkdtempSync(join(tmpdir(), 'understudy-canary-'));
  const canary = join(canaries, 'pwned');
  /** Everything a shell could run or expand, aimed at the canary file. */
  const payload = `it's "ok" $(touch ${canary}) \`touch ${canary}\`; touch ${canary} | tee ${canary} & > ${canary} * ~ $HOME \\ -e --`;

  const ACCOUNT = '0123456789abcdef0123456789abcdef';
  const standIns = {
    curl: recorder("echo '<p>ok</p>'"),
    // Reads the body as grep does: a stand-in that left it unread would fail curl with SIGPIPE.
    grep: recorder('cat > /dev/null'),
    certbot: recorder(),
    nginx: recorder(),
    systemctl: recorder(),
    openssl: recorder(),
    mkdir: recorder(),
    tar: recorder(),
    sed: recorder(`echo ${ACCOUNT}`),
    find: recorder(`echo 'accounts/acme-v02.api.letsencrypt.org/directory/${ACCOUNT}'`),
    readlink: recorder('echo "../../archive/lineage/$(basename "$1" .pem)1.pem"'),
    aws: recorder("echo '{}'"),
    npx: recorder(),
  };
  const UPLOAD_URL = `https://understudy-runs.s3.eu-west-1.amazonaws.com/tls/run/x.tar.gz?X-Amz-Signature=ab&x=$(touch ${canary})`;

  /** Runs the script under bash with the stand-ins; nothing may have run but them. */
  const run = async (lines: readonly string[]) => {
    const script = lines[0]?.startsWith('#!') ? lines : ['#!/bin/bash', ...lines];
    const result = await runScript(script, standIns);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(readdirSync(canaries)).toEqual([]);
    return recordedCalls(result.dir);
  };
  /** Every argument one stand-in was given, over all its calls. */
  const argsOf = (calls: { command: string; args: string[] }[], command: string) =>
    calls.filter((c) => c.command === command).flatMap((c) => c.args);

  /** Schema-valid, and as hostile as each pattern allows. */
  const valid = (tls: Record<string, unknown>): TargetConfig =>
    TargetSchema.parse({
      name: 'web',
      allocationId: 'eipalloc-0123456789abcdef0',
      domain: 'a-1.b--c.example.com',
      image: { imageId: 'ami-0123456789abcdef0' },
      tls,
      health: { path: '/~root/../-o/--output/.x', bodyContains: payload },
      terraform: {
        state: "s3://acme-terraform-state/it's/(prod)*!/a=b@c+d:e/terraform.tfstate",
        workspace: 'prod-1',
        workspaceKeyPrefix: "env:'x'*(y)",
        instanceAddress: `module.web["it's $(touch ${canary})"].aws_instance.this["\`touch ${canary}\`; rm -rf ~"]`,
        dynamodbTable: 'acme.locks-1_x',
      },
    });
  const EMAIL = 'o.brien+ops%ops@example.com';
  /**
   * Values no pattern lets through, fed to the script builders directly: quoting at use must hold even
   * if a pattern were loosened by mistake.
   */
  const unchecked = (tls: Record<string, unknown>): TargetConfig => {
    const base = valid(tls);
    return {
      ...base,
      domain: `x.example'; touch ${canary}; echo '`,
      tls: { ...base.tls, ...(base.tls.email ? { email: `a@b.c$(touch ${canary})'"` } : {}) },
      health: { ...base.health, path: `/$(touch ${canary})'\`touch ${canary}\`` },
    };
  };

  it('accepts the hostile values used below as valid configuration, and refuses the unchecked ones', () => {
    expect(valid({ mode: 'dns-01', email: EMAIL, hostedZoneId: 'Z0123456789ABC' }).health.bodyContains).toBe(
      payload,
    );
    const loose = unchecked({ mode: 'dns-01', email: EMAIL, hostedZoneId: 'Z0123456789ABC' });
    const refused = TargetSchema.safeParse(loose);
    expect(refused.success).toBe(false);
    expect(refused.error?.issues.map((i) => i.path.join('.')).sort()).toEqual([
      'domain',
      'health.path',
      'tls.email',
    ]);
  });

  describe.each([
    ['schema-valid hostile values', valid],
    ['values no pattern allows, fed past the schema', unchecked],
  ] as const)('with %s', (_label, make) => {
    it('prepare (tls none): curl gets the Host header and URL, grep -F the body text, each whole', async () => {
      const target = make({ mode: 'none' });
      const calls = await run(prepareScript(target));

      expect(argsOf(calls, 'curl')).toEqual(
        expect.arrayContaining([`Host: ${target.domain}`, `http://127.0.0.1${target.health.path}`]),
      );
      expect(argsOf(calls, 'grep')).toEqual(['-F', '--', payload]);
    });

    it('prepare (dns-01): certbot gets the domain and e-mail, curl and openssl the domain, each whole', async () => {
      const target = make({ mode: 'dns-01', email: EMAIL, hostedZoneId: 'Z0123456789ABC' });
      const calls = await run(prepareScript(target));

      const certbot = calls.find((c) => c.command === 'certbot')?.args ?? [];
      expect(certbot[certbot.indexOf('-d') + 1]).toBe(target.domain);
      expect(certbot[certbot.indexOf('-m') + 1]).toBe(target.tls.email);
      expect(argsOf(calls, 'curl')).toEqual(
        expect.arrayContaining([
          `${target.domain}:443:127.0.0.1`,
          `https://${target.domain}${target.health.path}`,
        ]),
      );
      expect(argsOf(calls, 'openssl')).toContain(target.domain);
      expect(argsOf(calls, 'grep')).toEqual(['-F', '--', payload]);
    });

    it('prepare (restore): curl gets the presigned URL, certbot install the domain as --cert-name, each whole', async () => {
      const target = make({ mode: 'restore' });
      const calls = await run(prepareScript(target, UPLOAD_URL));

      expect(argsOf(calls, 'curl')).toContain(UPLOAD_URL);
      const certbot = calls.find((c) => c.command === 'certbot')?.args ?? [];
      expect(certbot[certbot.indexOf('--cert-name') + 1]).toBe(target.domain);
      expect(argsOf(calls, 'sed')).toContain(`/etc/letsencrypt/renewal/${target.domain}.conf`);
    });

    it('certificate (http-01): certbot gets the domain and the e-mail, each whole', async () => {
      const target = make({ mode: 'http-01', email: EMAIL });
      const calls = await run(certificateScript(target));

      const certbot = calls.find((c) => c.command === 'certbot')?.args ?? [];
      expect(certbot[certbot.indexOf('-d') + 1]).toBe(target.domain);
      expect(certbot[certbot.indexOf('-m') + 1]).toBe(target.tls.email);
    });

    it('pack-certificate: readlink, tar and curl get the lineage paths and the URL, each whole', async () => {
      const target = make({ mode: 'restore' });
      const calls = await run(packScript(target, UPLOAD_URL));

      expect(argsOf(calls, 'readlink')).toContain(`/etc/letsencrypt/live/${target.domain}/cert.pem`);
      expect(argsOf(calls, 'tar')).toEqual(
        expect.arrayContaining([
          `live/${target.domain}`,
          `archive/${target.domain}/cert1.pem`,
          `renewal/${target.domain}.conf`,
          `accounts/acme-v02.api.letsencrypt.org/directory/${ACCOUNT}`,
        ]),
      );
      expect(argsOf(calls, 'curl')).toContain(UPLOAD_URL);
    });

    it('the rollback check command pins the domain and path for curl, each whole', async () => {
      const target = make({ mode: 'none' });
      const calls = await run([checkCommand(target, '203.0.113.5')]);

      expect(argsOf(calls, 'curl')).toEqual(
        expect.arrayContaining([
          `${target.domain}:80:203.0.113.5`,
          `http://${target.domain}${target.health.path}`,
        ]),
      );
    });
  });

  it('the manual reconcile command passes every terraform.* value to the CLI whole', async () => {
    const target = valid({ mode: 'none' });
    const terraform = target.terraform as NonNullable<TargetConfig['terraform']>;
    const calls = await run([
      manualReconcileCommand({
        terraform,
        region: 'eu-west-1',
        newInstanceId: 'i-0bbbbbbbbbbbbbbb2',
        oldInstanceId: 'i-0aaaaaaaaaaaaaaa1',
        allocationId: 'eipalloc-0123456789abcdef0',
        runId: 'arn:aws:states:eu-west-1:111122223333:execution:understudy-replace:run-1',
      }),
    ]);

    const cli = calls.find((c) => c.command === 'npx')?.args ?? [];
    const flagValue = (flag: string) => cli[cli.indexOf(flag) + 1];
    expect(flagValue('--state')).toBe(terraform.state);
    expect(flagValue('--workspace')).toBe(terraform.workspace);
    expect(flagValue('--workspace-key-prefix')).toBe(terraform.workspaceKeyPrefix);
    expect(flagValue('--dynamodb-table')).toBe(terraform.dynamodbTable);
    expect(flagValue('--instance-address')).toBe(terraform.instanceAddress);
    expect(calls.filter((c) => c.command === 'aws')).toHaveLength(3);
  });
});

it('holds at least 30 malformed inputs', () => {
  expect(CORPUS.length).toBeGreaterThanOrEqual(30);
});
