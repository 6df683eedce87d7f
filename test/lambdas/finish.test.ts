import 'aws-sdk-client-mock-jest';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { DeleteParametersCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { finish } from '../../lambdas/finish/finish';
import { handler } from '../../lambdas/finish/handler';
import { createClients } from '../../lambdas/shared/clients';
import { parameterNames, runKeys } from '../../lambdas/shared/constants';
import { type ComposedMessage, machineReadable, SUBJECT_LIMIT } from '../../lambdas/shared/notify';
import { lockIdFor } from '../../lambdas/shared/tfstate/s3-lock';
import {
  BUCKET,
  CANDIDATE_ID,
  EXECUTION_ARN,
  EXECUTION_NAME,
  fakeParameters,
  fakeS3,
  lambdaContext,
  lockFor,
  makeState,
  makeTarget,
  OLD_ID,
  PREFIX,
  TOPIC,
} from './ssm-steps.fixture';

const sns = mockClient(SNSClient);
const ssm = mockClient(SSMClient);
let s3: ReturnType<typeof fakeS3>;
let params: ReturnType<typeof fakeParameters>;
const env = { parameterPrefix: PREFIX, runsBucket: BUCKET, topicArn: TOPIC };
const recordKey = runKeys.record('web', EXECUTION_NAME);
const OTHER_ARN = 'arn:aws:states:eu-west-1:111122223333:execution:understudy-replace:other';

const lambdaCause = (errorType: string, errorMessage: string) =>
  JSON.stringify({ errorType, errorMessage, trace: ['at somewhere'] });
const replaced = () => ({
  ...makeState(),
  switch: { moved: true, at: '2026-05-01T10:09:00.000Z', previousInstanceId: OLD_ID },
  retire: { oldInstanceId: OLD_ID, stopped: true, retireAfter: '2026-05-02T10:10:00.000Z' },
});
const rolledBack = () => ({
  ...makeState(),
  error: {
    Error: 'ProbeFailed',
    Cause: lambdaCause('ProbeFailed', 'www.example.com did not answer healthy'),
  },
  rollback: {
    outcome: 'rolled-back',
    eipInstanceId: OLD_ID,
    serviceHealthy: true,
    candidates: [{ instanceId: CANDIDATE_ID, action: 'stopped' }],
    commands: [],
  },
});
/** The state of a rollback within the window, as Preflight planned it: the retired OLD_ID comes back. */
const rollbackPlanState = () =>
  makeState(makeTarget(), {
    action: 'rollback',
    restore: {
      instanceId: OLD_ID,
      imageId: 'ami-0aaaaaaaaaaaaaaa0',
      state: 'stopped',
      retireAfter: '2026-05-02T09:00:00.000Z',
      scheduleName: `web-${OLD_ID}`,
    },
  });
const record = () => JSON.parse(s3.objects.get(recordKey)?.text ?? 'null');
/** The JSON document after the text of the run's first outcome message. */
// biome-ignore lint/suspicious/noExplicitAny: a test reads arbitrary fields of the document
const outcomeDocument = (): any => machineReadable(outcomeMessages()[0]?.Message ?? '') ?? {};
/** What AnnounceOutcome would publish: every outcome message the Finish attempts of this test composed. */
let announced: (ComposedMessage & { TopicArn: string })[] = [];
const outcomeMessages = () => announced;
const run = async (state: unknown) => {
  const result = await finish(createClients(), env, state as Parameters<typeof finish>[2]);
  announced.push({ TopicArn: TOPIC, ...result.announcement });
  return result;
};
/** The outcome messages Finish published itself (it must leave them to the state machine). */
const publishedOutcomes = () =>
  sns
    .commandCalls(PublishCommand)
    .map((c) => c.args[0].input)
    .filter((i) => i.MessageAttributes?.kind?.StringValue === 'outcome');

beforeEach(() => {
  announced = [];
  sns.reset();
  ssm.reset();
  s3 = fakeS3();
  s3.seedLock();
  params = fakeParameters(ssm);
  sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
});

describe('finish', () => {
  it('reports a replacement, releases its lock, cleans up and writes the run record', async () => {
    params.set(parameterNames(PREFIX).token(CANDIDATE_ID), { type: 'SecureString', value: '{}' });
    params.set(parameterNames(PREFIX).earlyEvent(CANDIDATE_ID), { type: 'String', value: '{}' });

    const result = await run(replaced());

    expect(result).toEqual({
      succeeded: true,
      outcome: 'replaced',
      recordKey,
      announcement: expect.any(Object),
    });
    expect(s3.objects.has(runKeys.lock('web'))).toBe(false);
    expect(params.size).toBe(0);
    expect(record()).toMatchObject({
      target: 'web',
      outcome: 'replaced',
      succeeded: true,
      candidateInstanceId: CANDIDATE_ID,
      plan: { oldInstanceId: OLD_ID, imageId: 'ami-0123456789abcdef0' },
      lock: 'released',
    });
    expect(outcomeMessages()).toEqual([
      expect.objectContaining({ TopicArn: TOPIC, Subject: `web: replaced ${OLD_ID} -> ${CANDIDATE_ID}` }),
    ]);
  });

  it('composes the outcome message for the state machine to publish, and never publishes it itself', async () => {
    const result = await run(replaced());

    expect(publishedOutcomes()).toEqual([]);
    expect(result.announcement.MessageAttributes).toEqual({
      kind: { DataType: 'String', StringValue: 'outcome' },
      event: { DataType: 'String', StringValue: 'replaced' },
      target: { DataType: 'String', StringValue: 'web' },
      execution: { DataType: 'String', StringValue: EXECUTION_NAME },
    });
    expect(machineReadable(result.announcement.Message)).toMatchObject({
      kind: 'outcome',
      event: 'replaced',
      record: `s3://${BUCKET}/${recordKey}`,
    });
  });

  it('composes the same outcome when retried, so a retry changes nothing the state machine publishes', async () => {
    // Only the clock moves between attempts: the message dates the finish, so it is held still here.
    jest.useFakeTimers({
      now: new Date('2026-05-01T10:20:00.000Z'),
      doNotFake: [
        'nextTick',
        'setImmediate',
        'setTimeout',
        'clearTimeout',
        'setInterval',
        'clearInterval',
        'queueMicrotask',
        'performance',
        'hrtime',
      ],
    });
    const first = await run(replaced());
    const second = await run(replaced());
    jest.useRealTimers();

    expect(second).toEqual(first);
    expect(publishedOutcomes()).toEqual([]);
  });

  it('does not release a lock held by another execution', async () => {
    s3.seedLock(OTHER_ARN, 'other');

    await run(replaced());

    expect(s3.mock).toHaveReceivedCommandTimes(DeleteObjectCommand, 0);
    expect(JSON.parse(s3.objects.get(runKeys.lock('web'))?.text ?? '{}').owner).toBe(OTHER_ARN);
    expect(record().lock).toBe('not-ours');
  });

  it('does not even look at a lock the state says belongs to another execution', async () => {
    const state = { ...replaced(), run: { ...replaced().run, lock: lockFor(OTHER_ARN) } };

    await run(state);

    expect(s3.mock).toHaveReceivedCommandTimes(DeleteObjectCommand, 0);
    expect(s3.mock).not.toHaveReceivedCommandWith(GetObjectCommand, { Key: runKeys.lock('web') });
  });

  it('still writes the record and publishes the outcome when the lock is unreadable, with a warning', async () => {
    s3.seedLock(EXECUTION_ARN, EXECUTION_NAME, 'not json');

    const result = await run(replaced());

    expect(result).toMatchObject({ succeeded: true, outcome: 'replaced', recordKey });
    expect(s3.objects.has(runKeys.lock('web'))).toBe(true);
    expect(record()).toMatchObject({
      lock: 'unreadable',
      warnings: [expect.stringContaining('is unreadable; inspect and delete it by hand')],
    });
    expect(outcomeMessages()).toHaveLength(1);
  });

  it('retries (Transient) when S3 throttles the lock release, before writing anything', async () => {
    s3.mock.on(DeleteObjectCommand).rejects(
      new S3ServiceException({
        name: 'SlowDown',
        $fault: 'server',
        $metadata: { httpStatusCode: 503 },
        message: 'slow down',
      }),
    );

    await expect(run(replaced())).rejects.toMatchObject({ name: 'Transient' });
    expect(s3.objects.has(recordKey)).toBe(false);
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 0);
  });

  it('reports a preflight refusal as failed, with the reason, when there is no plan', async () => {
    s3.seedLock(OTHER_ARN, 'other');
    const result = await run({
      input: { target: 'web' },
      execution: makeState().execution,
      error: {
        Error: 'PreflightRefused',
        Cause: lambdaCause('PreflightRefused', 'EIP eipalloc-0123abcd is not associated'),
      },
    });

    expect(result).toEqual({
      succeeded: false,
      outcome: 'failed',
      error: 'PreflightRefused',
      cause: 'PreflightRefused: EIP eipalloc-0123abcd is not associated',
      recordKey,
      announcement: expect.objectContaining({ Subject: 'web: FAILED' }),
    });
    expect(s3.mock).toHaveReceivedCommandTimes(DeleteObjectCommand, 0);
    expect(ssm).toHaveReceivedCommandTimes(DeleteParametersCommand, 0);
    expect(outcomeMessages()).toHaveLength(1);
  });

  it('releases the lock a preflight took before it failed without a plan (a timeout after the lock write)', async () => {
    const result = await run({
      input: { target: 'web' },
      execution: makeState().execution,
      error: { Error: 'Sandbox.Timedout', Cause: lambdaCause('Sandbox.Timedout', 'Task timed out') },
    });

    expect(result.outcome).toBe('failed');
    expect(s3.objects.has(runKeys.lock('web'))).toBe(false);
    expect(record().lock).toBe('released');
  });

  it('files the record of an invalid target name under a safe key', async () => {
    const result = await run({
      input: { target: '../../locks/web' },
      execution: makeState().execution,
      error: { Error: 'InvalidInput', Cause: 'input.target: unknown target' },
    });

    expect(result.recordKey).toBe(`runs/_invalid-target/${EXECUTION_NAME}.json`);
  });

  it('reports a rollback with the original failure and where traffic is now', async () => {
    const result = await run(rolledBack());

    expect(result).toMatchObject({ succeeded: false, outcome: 'rolled-back', error: 'RolledBack' });
    expect(result.cause).toContain('ProbeFailed: www.example.com did not answer healthy');
    expect(result.cause).toContain(`back on ${OLD_ID} and the service answers healthy`);
    expect(outcomeMessages()[0]?.Subject).toBe(`web: ROLLED BACK to ${OLD_ID}`);
  });

  it("warns that the old box's afterSwitch hook is not undone when traffic went back to it, and only then", async () => {
    const hookRuns = { afterSwitchOld: { command: { commandId: 'c-9', instanceId: OLD_ID } } };

    await run({ ...rolledBack(), hookRuns });
    const afterHook = record().warnings as string[];
    await run(rolledBack());
    const withoutHook = record().warnings as string[];

    expect(afterHook).toEqual([
      `the afterSwitch.oldBox hook ran on ${OLD_ID} before traffic went back to it: start again what it stopped there (cron jobs, workers)`,
    ]);
    expect(withoutHook).toEqual([]);
  });

  it('does not claim a healthy service after a rollback when the baseline was already unhealthy', async () => {
    const state = {
      ...rolledBack(),
      run: { ...rolledBack().run, baseline: { healthy: false, detail: 'status 502' } },
    };

    const result = await run(state);

    expect(result.cause).toContain('already unhealthy before the run');
    expect(result.cause).not.toContain('answers healthy');
  });

  it('asks for manual action, with the exact command, when the rollback itself failed', async () => {
    const { rollback: _r, ...failedRollback } = rolledBack();

    const result = await run({
      ...failedRollback,
      rollbackError: { Error: 'RollbackFailed', Cause: 'AssociateAddress denied' },
    });

    expect(result).toMatchObject({
      succeeded: false,
      outcome: 'manual-action-needed',
      error: 'ManualActionNeeded',
    });
    expect(result.cause).toContain(
      `aws ec2 associate-address --allocation-id eipalloc-0123abcd --instance-id ${OLD_ID} --allow-reassociation`,
    );
  });

  it("passes the rollback's commands on in the outcome message", async () => {
    const commands = [
      `aws ec2 associate-address --allocation-id eipalloc-0123abcd --instance-id ${OLD_ID} --allow-reassociation`,
    ];
    const base = rolledBack();

    await run({ ...base, rollback: { ...base.rollback, outcome: 'manual-action-needed', commands } });

    expect(outcomeDocument()).toMatchObject({
      kind: 'outcome',
      event: 'manual-action-needed',
      commands,
    });
  });

  it.each(['no-op', 'dry-run'] as const)(
    'reports a %s as a success without touching any lock',
    async (action) => {
      const base = makeState();
      const { lock: _lock, ...plan } = base.run;
      const { launch: _launch, ...state } = { ...base, run: { ...plan, action } };

      const result = await run(state);

      expect(result).toMatchObject({ succeeded: true, outcome: action, recordKey });
      expect(s3.mock).toHaveReceivedCommandTimes(DeleteObjectCommand, 0);
      expect(outcomeMessages()[0]?.Subject).toBe(`web: ${action === 'no-op' ? 'nothing to do' : 'dry run'}`);
    },
  );

  it('still reports a replacement when retiring the old box failed, with a warning', async () => {
    const { retire: _retire, ...state } = replaced();

    const result = await run({
      ...state,
      retireError: { Error: 'RetireFailed', Cause: 'OperationNotPermitted' },
    });

    expect(result).toMatchObject({ succeeded: true, outcome: 'replaced' });
    const kinds = sns
      .commandCalls(PublishCommand)
      .map((c) => c.args[0].input.MessageAttributes?.kind?.StringValue);
    expect(kinds).toEqual(['warning']);
    expect(outcomeDocument().warnings[0]).toContain(`${OLD_ID} could not be retired`);
  });

  describe('with a Terraform-managed target', () => {
    const terraform = {
      state: 's3://acme-state/web/terraform.tfstate',
      workspace: 'default',
      workspaceKeyPrefix: 'env:',
      instanceAddress: 'module.web.aws_instance.this',
      useLockfile: true,
      lockTimeoutSeconds: 120,
    };
    const managed = () => {
      const state = replaced();
      return { ...state, run: { ...state.run, target: { ...state.run.target, terraform } } };
    };
    const warnings = () =>
      sns
        .commandCalls(PublishCommand)
        .map((c) => c.args[0].input)
        .filter((i) => i.MessageAttributes?.kind?.StringValue === 'warning');

    it('records the reconciled serials and backup in the run record, without a warning', async () => {
      const result = await run({
        ...managed(),
        reconcile: {
          status: 'reconciled',
          state: 's3://acme-state/web/terraform.tfstate',
          serialBefore: '41',
          serialAfter: '42',
          backupKey: 'web/terraform.tfstate.understudy-backups/run/serial-41.tfstate',
          stillMentioning: ['aws_cloudwatch_metric_alarm.web'],
          warnings: [],
        },
      });

      expect(result).toMatchObject({ succeeded: true, outcome: 'replaced' });
      expect(record().terraform).toMatchObject({
        status: 'reconciled',
        serialBefore: '41',
        serialAfter: '42',
      });
      expect(warnings()).toHaveLength(0);
    });

    it('reports a replacement whose state was not reconciled, with the reason, the backup and the commands', async () => {
      const result = await run({
        ...managed(),
        reconcile: {
          status: 'not-reconciled',
          state: 's3://acme-state/web/terraform.tfstate',
          reason: 'the state is locked by alice@laptop (OperationTypeApply)',
          backupKey: 'web/terraform.tfstate.understudy-backups/run/serial-41.tfstate',
          command: 'npx understudy tfstate reconcile --state s3://acme-state/web/terraform.tfstate',
        },
      });

      expect(result).toMatchObject({ succeeded: true, outcome: 'replaced' });
      const [warning] = warnings();
      expect(warning?.MessageAttributes?.event?.StringValue).toBe('state-not-reconciled');
      const text = outcomeDocument().warnings[0] as string;
      expect(text).toContain('alice@laptop');
      expect(text).toContain('serial-41.tfstate');
      expect(text).toContain('npx understudy tfstate reconcile');
    });

    it('builds the by-hand commands itself when the reconcile step crashed', async () => {
      await run({ ...managed(), reconcileError: { Error: 'States.Timeout', Cause: 'timed out' } });

      const text = outcomeDocument().warnings[0] as string;
      expect(text).toContain('States.Timeout');
      expect(text).toContain(`--instance-ids '${CANDIDATE_ID}'`);
      expect(text).toContain(`--expect-instance '${OLD_ID}'`);
      expect(text).toContain("--instance-address 'module.web.aws_instance.this'");
      expect(text).toContain(`terraform force-unlock ${lockIdFor(EXECUTION_ARN)}`);
      // The CLI continues this run: it re-enters the lock the step left and knows its own write.
      expect(text).toContain(`--run-id '${EXECUTION_ARN}'`);
    });
  });

  it('never writes tokens or user data into the record or the message', async () => {
    const state = {
      ...replaced(),
      input: { target: 'web', taskToken: 'TOKEN-IN-INPUT' },
      launch: { instanceId: CANDIDATE_ID, clientToken: 'c', userData: 'VVNFUkRBVEEtU0VDUkVU' },
      readiness: {
        status: 'done',
        exitCode: 0,
        errors: ['USERDATA-IN-ERRORS'],
        taskToken: 'TOKEN-IN-READINESS',
      },
      awaitPayload: { taskToken: 'TOKEN-AT-TOP' },
      run: { ...replaced().run, userData: 'USERDATA-IN-RUN' },
    };

    await run(state);

    const written = s3.objects.get(recordKey)?.text ?? '';
    const published = [
      ...sns.commandCalls(PublishCommand).map((c) => JSON.stringify(c.args[0].input)),
      ...outcomeMessages().map((m) => JSON.stringify(m)),
    ].join('\n');
    for (const text of [written, published]) {
      expect(text).not.toMatch(/TOKEN-|USERDATA|VVNFUkRBVEEtU0VDUkVU/);
    }
    expect(record().readiness).toEqual({ status: 'done', exitCode: 0 });
  });

  it('retries (Transient) when S3 throttles the record write', async () => {
    s3.mock.on(PutObjectCommand, { Key: recordKey }).rejects(
      new S3ServiceException({
        name: 'SlowDown',
        $fault: 'server',
        $metadata: { httpStatusCode: 503 },
        message: 'slow down',
      }),
    );

    await expect(run(replaced())).rejects.toMatchObject({ name: 'Transient' });
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 0);
  });

  it('runs end to end through the Lambda handler', async () => {
    Object.assign(process.env, { PARAMETER_PREFIX: PREFIX, RUNS_BUCKET: BUCKET, TOPIC_ARN: TOPIC });

    await expect(handler(replaced(), lambdaContext())).resolves.toMatchObject({
      succeeded: true,
      outcome: 'replaced',
    });
    expect(record().execution.arn).toBe(EXECUTION_ARN);
  });
});

describe('finish and TLS (issue 4)', () => {
  const transfer = `tls/${EXECUTION_NAME}/0123456789abcdef.tar.gz`;
  const restoreReplaced = () => ({ ...replaced(), ...makeState(makeTarget({ tls: { mode: 'restore' } })) });
  const seedTransfer = (key = transfer) => s3.objects.set(key, { text: 'gzip', etag: '"t-1"' });
  const success = { status: 'Success', output: '' };

  it("deletes this execution's certificate transfer, and leaves other executions' alone", async () => {
    seedTransfer();
    seedTransfer(`tls/${EXECUTION_NAME}/extra.tar.gz`);
    seedTransfer('tls/other-run/0123456789abcdef.tar.gz');

    const result = await run({ ...restoreReplaced(), pack: { transferKey: transfer } });

    expect(result.outcome).toBe('replaced');
    // Gone for good: no noncurrent version and no delete marker hides the private key in the bucket.
    expect(s3.versionsUnder('tls/')).toEqual(['tls/other-run/0123456789abcdef.tar.gz']);
    expect(s3.mock).toHaveReceivedCommandWith(ListObjectVersionsCommand, {
      Bucket: BUCKET,
      Prefix: `tls/${EXECUTION_NAME}/`,
    });
    expect(record().warnings).toEqual([]);
  });

  it('cleans up after a failed restore run too, and a retry finds nothing left to delete', async () => {
    seedTransfer();
    const failed = {
      ...rolledBack(),
      ...makeState(makeTarget({ tls: { mode: 'restore' } })),
      rollback: rolledBack().rollback,
    };

    await run(failed);
    await run(failed);

    expect(s3.versionsUnder(transfer)).toEqual([]);
    expect(s3.mock).toHaveReceivedCommandTimes(ListObjectVersionsCommand, 2);
    const deletes = s3.mock.commandCalls(DeleteObjectCommand).map((c) => c.args[0].input.Key);
    expect(deletes.filter((k) => k === transfer)).toHaveLength(1);
  });

  it('turns a failed cleanup into a warning, never a lost outcome', async () => {
    seedTransfer();
    s3.mock.on(ListObjectVersionsCommand).rejects(
      new S3ServiceException({
        name: 'AccessDenied',
        $fault: 'client',
        $metadata: {},
        message: 'Access Denied',
      }),
    );

    const result = await run(restoreReplaced());

    expect(result).toMatchObject({ succeeded: true, outcome: 'replaced' });
    expect(record().warnings).toEqual([
      expect.stringMatching(
        new RegExp(
          `^could not delete the certificate transfer under s3://${BUCKET}/tls/${EXECUTION_NAME}/ \\(AccessDenied: Access Denied\\)`,
        ),
      ),
    ]);
    expect(outcomeMessages()).toHaveLength(1);
  });

  it('does not look for transfers in the other modes', async () => {
    await run(replaced());
    await run({
      ...replaced(),
      ...makeState(makeTarget({ tls: { mode: 'none' } })),
      execution: { ...replaced().execution, name: 'web-none' },
    });

    expect(s3.mock).toHaveReceivedCommandTimes(ListObjectsV2Command, 0);
  });

  it('records the certificate an http-01 run asked for, for the rate-limit guard', async () => {
    const before = Date.now();
    await run({
      ...replaced(),
      certificate: { command: { commandId: 'c', instanceId: CANDIDATE_ID }, result: success },
    });

    expect(record().certificate).toEqual({
      requested: true,
      names: ['www.example.com'],
      at: expect.any(String),
    });
    expect(Date.parse(record().certificate.at)).toBeGreaterThanOrEqual(before);
    expect(record().plan.tlsMode).toBe('http-01');
  });

  it('records the certificate of a dns-01 run once Prepare sent certbot, even if a later line failed and the run rolled back', async () => {
    const dns01 = makeState(
      makeTarget({ tls: { mode: 'dns-01', email: 'ops@example.com', hostedZoneId: 'Z0123456789ABC' } }),
    );

    await run({
      ...rolledBack(),
      ...dns01,
      rollback: rolledBack().rollback,
      prepare: { command: { commandId: 'c', instanceId: CANDIDATE_ID }, result: { status: 'Failed' } },
    });

    expect(record()).toMatchObject({
      outcome: 'rolled-back',
      certificate: { requested: true, names: ['www.example.com'] },
    });
  });

  it.each([
    ['http-01 that never got to send certbot', makeTarget(), {}],
    [
      'dns-01 that never got to send Prepare',
      makeTarget({ tls: { mode: 'dns-01', email: 'ops@example.com', hostedZoneId: 'Z0123456789ABC' } }),
      {},
    ],
    [
      'restore, which requests nothing',
      makeTarget({ tls: { mode: 'restore' } }),
      { prepare: { result: success } },
    ],
    ['none', makeTarget({ tls: { mode: 'none' } }), { prepare: { result: success } }],
  ])('records no issuance for %s', async (_label, target, extra) => {
    await run({ ...replaced(), ...makeState(target), ...extra });

    expect(record()).not.toHaveProperty('certificate');
  });
});

describe('the outcome message a human reads (issue 6)', () => {
  const BACKUP = 'web/terraform.tfstate.understudy-backups/run/serial-41.tfstate';
  const CONSOLE = `https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/${EXECUTION_ARN}`;
  const probed = {
    phase: 'bake',
    startedAt: '2026-05-01T10:09:01.000Z',
    phaseStartedAt: '2026-05-01T10:09:42.000Z',
    consecutiveSuccesses: 0,
    consecutiveFailures: 0,
    requests: 14,
    failures: 2,
    done: true,
  };
  const fullRun = () => ({
    ...replaced(),
    readiness: { status: 'done', exitCode: 0 },
    probe: probed,
    reconcile: {
      status: 'reconciled',
      state: 's3://acme-state/web/terraform.tfstate',
      serialBefore: '41',
      serialAfter: '42',
      backupKey: BACKUP,
    },
  });
  const message = () => outcomeMessages()[0]?.Message ?? '';
  const text = () => message().split('---- machine-readable (JSON) ----')[0] ?? '';

  it('says in its first line what happened, then the old and new boxes, the downtime, the Terraform serials and backup', async () => {
    await run(fullRun());

    expect(text().split('\n')[0]).toBe(
      `web: replaced ${OLD_ID} with ${CANDIDATE_ID} on ami-0123456789abcdef0`,
    );
    expect(text()).toContain(`Old instance: ${OLD_ID}`);
    expect(text()).toContain(`New instance: ${CANDIDATE_ID}`);
    expect(text()).toContain(
      'Downtime seen by the probe: 2 of 14 requests failed; healthy 42s after the switch',
    );
    expect(text()).toContain(
      'Terraform state: reconciled (s3://acme-state/web/terraform.tfstate), serial 41 -> 42',
    );
    expect(text()).toContain(`Terraform backup: ${BACKUP}`);
  });

  it('lays out a timeline with times and offsets from the start', async () => {
    await run(fullRun());

    const timeline = text().slice(text().indexOf('Timeline (UTC)'));
    expect(timeline).toMatch(/^ {2}10:00:00 \+0s +started$/m);
    expect(timeline).toMatch(new RegExp(`^ +launched ${CANDIDATE_ID} from ami-0123456789abcdef0$`, 'm'));
    expect(timeline).toMatch(/readiness: done$/m);
    expect(timeline).toMatch(
      new RegExp(
        `^ {2}10:09:00 \\+9m 00s +switched 203\\.0\\.113\\.10 from ${OLD_ID} to ${CANDIDATE_ID}$`,
        'm',
      ),
    );
    expect(timeline).toMatch(/^ {2}10:09:42 \+9m 42s +probe passed; bake period began$/m);
    expect(timeline).toMatch(/finished: replaced$/m);
  });

  it('dates the launch and the readiness report from what Launch and the readiness task returned', async () => {
    const state = fullRun();
    await run({
      ...state,
      launch: { ...state.launch, launchedAt: '2026-05-01T10:00:40.000Z' },
      readiness: { ...state.readiness, readyAt: '2026-05-01T10:07:15.000Z' },
    });

    const timeline = text().slice(text().indexOf('Timeline (UTC)'));
    expect(timeline).toMatch(
      new RegExp(`^ {2}10:00:40 \\+40s +launched ${CANDIDATE_ID} from ami-0123456789abcdef0$`, 'm'),
    );
    expect(timeline).toMatch(/^ {2}10:07:15 \+7m 15s +readiness: done$/m);
    // The machine-readable forms carry the same moments under the same names.
    const moments = { launchedAt: '2026-05-01T10:00:40.000Z', readyAt: '2026-05-01T10:07:15.000Z' };
    expect(outcomeDocument()).toMatchObject(moments);
    expect(record()).toMatchObject(moments);
  });

  it('lists the launch and readiness without a time when the steps returned none', async () => {
    await run(fullRun());

    const timeline = text().slice(text().indexOf('Timeline (UTC)'));
    expect(timeline).toMatch(new RegExp(`^ {11,}launched ${CANDIDATE_ID}`, 'm'));
    expect(outcomeDocument().launchedAt).toBeUndefined();
    expect(record().readyAt).toBeUndefined();
  });

  it('dates a rollback on request by when the retired box was started and found up again', async () => {
    const state = rollbackPlanState();
    await run({
      ...state,
      launch: {
        instanceId: OLD_ID,
        clientToken: `restore-${OLD_ID}`,
        launchedAt: '2026-05-01T10:00:20.000Z',
      },
      restore: {
        command: { commandId: 'c-1', instanceId: OLD_ID },
        readyAt: '2026-05-01T10:01:50.000Z',
        result: { status: 'Success', output: '' },
      },
      switch: { moved: true, at: '2026-05-01T10:02:10.000Z', previousInstanceId: CANDIDATE_ID },
      retire: { oldInstanceId: CANDIDATE_ID, stopped: true, retireAfter: '2026-05-02T10:10:00.000Z' },
    });

    expect(outcomeDocument().event).toBe('rolled-back-by-request');
    const timeline = text().slice(text().indexOf('Timeline (UTC)'));
    expect(timeline).toMatch(new RegExp(`^ {2}10:00:20 \\+20s +started the retired ${OLD_ID}$`, 'm'));
    expect(timeline).toMatch(
      new RegExp(`^ {2}10:01:50 \\+1m 50s +${OLD_ID} is up: status checks passed, SSM agent online$`, 'm'),
    );
    expect(timeline).not.toContain('readiness');
    expect(record()).toMatchObject({
      launchedAt: '2026-05-01T10:00:20.000Z',
      readyAt: '2026-05-01T10:01:50.000Z',
    });
  });

  it('links the execution in the console and gives the exact rollback commands after a replacement', async () => {
    await run(fullRun());

    expect(text()).toContain(`Console: ${CONSOLE}`);
    expect(text()).toContain('the old box is kept until 2026-05-02T10:10:00.000Z');
    expect(text()).toContain('  npx understudy rollback web\n');
    expect(text()).toContain(
      '  aws stepfunctions start-execution --region eu-west-1 --state-machine-arn arn:aws:states:eu-west-1:111122223333:stateMachine:understudy-replace --input \'{"target":"web","action":"rollback"}\'',
    );
  });

  it('offers no rollback command when the box was not replaced, and says where traffic went back to', async () => {
    await run({ ...rolledBack(), switch: replaced().switch, probe: { ...probed, phase: 'verify' } });

    expect(outcomeMessages()[0]?.Subject).toBe(`web: ROLLED BACK to ${OLD_ID}`);
    expect(text()).not.toContain('understudy rollback');
    expect(text()).toMatch(new RegExp(`rolled back: the Elastic IP is on ${OLD_ID}$`, 'm'));
    expect(text()).toContain('Downtime seen by the probe: 2 of 14 requests failed\n');
    expect(text()).toContain(`Console: ${CONSOLE}`);
  });

  it('keeps the subject one printable line under 100 characters, whatever the cause says', async () => {
    const cause = `line one\r\nline two ${'é'.repeat(50)} ${'x'.repeat(200)}`;
    const { launch: _l, ...noCandidate } = rolledBack();
    const { rollback: _r, ...state } = noCandidate;

    await run({ ...state, error: { Error: 'LaunchFailed', Cause: cause } });

    const subject = outcomeMessages()[0]?.Subject ?? '';
    expect(subject).toBe('web: FAILED');
    expect(text()).toContain('line two');
  });

  it('carries the same facts as JSON after the text, for scripts, with the filterable attributes kept', async () => {
    await run(fullRun());

    expect(outcomeDocument()).toMatchObject({
      kind: 'outcome',
      event: 'replaced',
      target: 'web',
      execution: EXECUTION_NAME,
      candidateInstanceId: CANDIDATE_ID,
      plan: { oldInstanceId: OLD_ID },
      startedAt: '2026-05-01T10:00:00.000Z',
      switchedAt: '2026-05-01T10:09:00.000Z',
      probe: { requests: 14, failures: 2, phaseStartedAt: '2026-05-01T10:09:42.000Z' },
      terraform: { status: 'reconciled', serialBefore: '41', serialAfter: '42', backupKey: BACKUP },
      console: CONSOLE,
      rollbackCommand: 'npx understudy rollback web',
      record: `s3://${BUCKET}/${recordKey}`,
    });
    expect(outcomeMessages()[0]?.MessageAttributes.kind).toEqual({
      DataType: 'String',
      StringValue: 'outcome',
    });
  });

  it('keeps every subject within what SNS accepts, even for a long target name', async () => {
    const long = `w${'-'.repeat(30)}b`;
    const state = replaced();
    await run({
      ...state,
      run: { ...state.run, target: { ...state.run.target, name: long } },
      input: { target: long },
    });

    const subject = outcomeMessages()[0]?.Subject ?? '';
    expect(subject.length).toBeLessThanOrEqual(SUBJECT_LIMIT);
    expect(subject).toMatch(/^[\x20-\x7e]+$/);
    expect(subject.startsWith(`${long}: replaced`)).toBe(true);
  });
});

describe('the run metrics Finish emits (issue 6)', () => {
  interface Emf {
    _aws: {
      CloudWatchMetrics: {
        Namespace: string;
        Dimensions: string[][];
        Metrics: { Name: string; Unit: string }[];
      }[];
    };
    [key: string]: unknown;
  }
  /** The EMF documents the handler wrote to stdout while `work` ran. */
  const emfDuring = async (work: () => Promise<unknown>): Promise<Emf[]> => {
    const lines: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      await work();
    } finally {
      spy.mockRestore();
    }
    return lines
      .flatMap((l) => l.split('\n'))
      .filter((l) => l.includes('"_aws"'))
      .map((l) => JSON.parse(l) as Emf);
  };
  const byDimensions = (docs: Emf[], dims: string[]) =>
    docs.find((d) => JSON.stringify(d._aws.CloudWatchMetrics[0]?.Dimensions) === JSON.stringify([dims]));
  const viaHandler = (state: unknown) => () => handler(state, lambdaContext());

  beforeAll(() => {
    Object.assign(process.env, { PARAMETER_PREFIX: PREFIX, RUNS_BUCKET: BUCKET, TOPIC_ARN: TOPIC });
  });

  it('emits the duration, the probe failures and the outcome, per target and for the stack, in the Understudy namespace', async () => {
    const state = {
      ...replaced(),
      probe: {
        phase: 'bake',
        startedAt: '2026-05-01T10:09:01.000Z',
        phaseStartedAt: '2026-05-01T10:09:30.000Z',
        requests: 9,
        failures: 1,
        done: true,
      },
    };

    const docs = await emfDuring(viaHandler(state));

    expect(docs).toHaveLength(2);
    const perTarget = byDimensions(docs, ['service', 'target']);
    const stack = byDimensions(docs, ['service']);
    for (const doc of [perTarget, stack]) {
      expect(doc?._aws.CloudWatchMetrics[0]?.Namespace).toBe('Understudy');
      expect(doc).toMatchObject({
        service: 'understudy',
        Runs: 1,
        OutcomeReplaced: 1,
        ProbeFailedRequests: 1,
        TimeToHealthy: 30,
        Rollbacks: 0,
      });
      expect(doc?.ReplacementDuration).toBeGreaterThan(0);
      expect(doc?._aws.CloudWatchMetrics[0]?.Metrics).toContainEqual({
        Name: 'ReplacementDuration',
        Unit: 'Seconds',
      });
    }
    expect(perTarget?.target).toBe('web');
    expect(stack).not.toHaveProperty('target');
  });

  it('counts a rollback, and no replacement duration', async () => {
    const docs = await emfDuring(viaHandler(rolledBack()));

    expect(byDimensions(docs, ['service'])).toMatchObject({ Runs: 1, OutcomeRolledBack: 1, Rollbacks: 1 });
    expect(byDimensions(docs, ['service'])).not.toHaveProperty('ReplacementDuration');
  });

  it('does not count a rollback on request in Rollbacks, whether it held or was undone', async () => {
    const state = rollbackPlanState();
    const restored = {
      ...state,
      launch: { instanceId: OLD_ID, clientToken: `restore-${OLD_ID}` },
      switch: { moved: true, at: '2026-05-01T10:02:10.000Z', previousInstanceId: CANDIDATE_ID },
      retire: { oldInstanceId: CANDIDATE_ID, stopped: true, retireAfter: '2026-05-02T10:10:00.000Z' },
    };

    const held = byDimensions(await emfDuring(viaHandler(restored)), ['service']);
    const undone = byDimensions(
      await emfDuring(
        viaHandler({
          ...restored,
          error: { Error: 'ProbeFailed', Cause: 'the restored box failed the probe' },
          rollback: rolledBack().rollback,
        }),
      ),
      ['service'],
    );

    expect(held).toMatchObject({ Runs: 1, OutcomeRolledBackByRequest: 1 });
    expect(undone).toMatchObject({ Runs: 1 });
    expect(undone).not.toHaveProperty('OutcomeRolledBackByRequest');
    expect(held).not.toHaveProperty('Rollbacks');
    expect(undone).not.toHaveProperty('Rollbacks');
  });

  it('counts a Terraform state that could not be reconciled', async () => {
    const docs = await emfDuring(
      viaHandler({ ...replaced(), reconcileError: { Error: 'States.Timeout', Cause: 'timed out' } }),
    );

    expect(byDimensions(docs, ['service', 'target'])).toMatchObject({
      ReconcileFailures: 1,
      OutcomeReplaced: 1,
    });
  });

  it('emits nothing when Finish fails and will be retried, so a run is counted once', async () => {
    s3.mock.on(PutObjectCommand, { Key: recordKey }).rejects(
      new S3ServiceException({
        name: 'SlowDown',
        $fault: 'server',
        $metadata: { httpStatusCode: 503 },
        message: 'slow down',
      }),
    );

    const docs = await emfDuring(() => viaHandler(replaced())().catch(() => undefined));

    expect(docs).toEqual([]);
  });
});
