import 'aws-sdk-client-mock-jest';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import {
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  SFNClient,
  SFNServiceException,
} from '@aws-sdk/client-sfn';
import { GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { createClients } from '../../lambdas/shared/clients';
import { parameterNames } from '../../lambdas/shared/constants';
import { logger } from '../../lambdas/shared/logger';
import { handler } from '../../lambdas/signal/handler';
import { IDENTITY_KEYS_VARIABLE, identityKeysVariable } from '../../lambdas/signal/identity';
import { signal } from '../../lambdas/signal/signal';
import { createIdentitySigner, sandboxIdentitySigner } from '../../sandbox/identity';
import {
  agentEvent,
  CANDIDATE_ID,
  captureLogs,
  describeAsCandidates,
  EVENT_REGION,
  fakeParameters,
  fakeTasks,
  fixtureTrust,
  identityOf,
  lambdaContext,
  OLD_ID,
  PREFIX,
  readyEvent,
} from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);
const sfn = mockClient(SFNClient);
const ec2 = mockClient(EC2Client);
const names = parameterNames(PREFIX);
const TOKEN = `AQCEAAAAKgAAAAMAAAAA${'secret-token-'.repeat(20)}`;

let params: ReturnType<typeof fakeParameters>;
let tasks: ReturnType<typeof fakeTasks>;

const storeToken = (onRecoverableErrors: 'fail' | 'accept' = 'fail') =>
  params.set(names.token(CANDIDATE_ID), {
    type: 'SecureString',
    value: JSON.stringify({ token: tasks.issue(TOKEN), onRecoverableErrors }),
  });
const run = (e: unknown) => signal(createClients(), { parameterPrefix: PREFIX, trust: fixtureTrust() }, e);

/** Another key pair than the one the fixture's Region trusts: what a box forging another's report holds. */
let forger: ReturnType<typeof createIdentitySigner>;
beforeAll(() => {
  forger = createIdentitySigner();
});

beforeEach(() => {
  ssm.reset();
  sfn.reset();
  ec2.reset();
  describeAsCandidates(ec2);
  params = fakeParameters(ssm);
  tasks = fakeTasks(sfn);
});

describe('signal', () => {
  it("completes the task with the agent's report when the token is stored", async () => {
    storeToken();

    await expect(run(readyEvent())).resolves.toEqual({ action: 'succeeded' });

    expect(tasks.tasks.get(TOKEN)).toMatchObject({
      state: 'succeeded',
      output: { status: 'done', exitCode: 0, errors: [] },
    });
  });

  it('dates the readiness result with the moment the final event arrived', async () => {
    storeToken();
    const before = Date.now();

    await run(readyEvent());

    const output = tasks.tasks.get(TOKEN)?.output as { readyAt?: string } | undefined;
    const readyAt = Date.parse(output?.readyAt ?? '');
    expect(readyAt).toBeGreaterThanOrEqual(before);
    expect(readyAt).toBeLessThanOrEqual(Date.now());
  });

  it('turns a progress event into a heartbeat', async () => {
    storeToken();

    await expect(run(agentEvent('Instance Progress', { status: 'running' }))).resolves.toEqual({
      action: 'heartbeat',
    });

    expect(tasks.tasks.get(TOKEN)).toMatchObject({ state: 'open', heartbeats: 1 });
  });

  it('ignores a progress event that arrives before the token, and keeps nothing for it', async () => {
    await expect(run(agentEvent('Instance Progress'))).resolves.toEqual({ action: 'ignored' });

    expect(sfn).toHaveReceivedCommandTimes(SendTaskHeartbeatCommand, 0);
    expect(params.size).toBe(0);
  });

  it('fails the task with the cloud-init errors on Instance Failed', async () => {
    storeToken();

    await expect(
      run(
        agentEvent('Instance Failed', {
          status: 'error',
          exitCode: 1,
          errors: ['package nginx: 404 Not Found'],
        }),
      ),
    ).resolves.toEqual({ action: 'failed' });

    expect(sfn).toHaveReceivedCommandWith(SendTaskFailureCommand, { error: 'ReadinessFailed' });
    expect(tasks.tasks.get(TOKEN)?.cause).toContain('package nginx: 404 Not Found');
  });

  it("fails exit code 2 (recoverable errors) under the target's 'fail' policy", async () => {
    storeToken('fail');

    await expect(run(readyEvent({ exitCode: 2, errors: ['deprecated key'] }))).resolves.toEqual({
      action: 'failed',
    });

    expect(tasks.tasks.get(TOKEN)?.cause).toContain('onRecoverableErrors is "fail"');
  });

  it("accepts exit code 2 (recoverable errors) under the target's 'accept' policy", async () => {
    storeToken('accept');

    await expect(run(readyEvent({ exitCode: 2, errors: ['deprecated key'] }))).resolves.toEqual({
      action: 'succeeded',
    });

    expect(tasks.tasks.get(TOKEN)?.output).toEqual({
      status: 'done',
      exitCode: 2,
      errors: ['deprecated key'],
      readyAt: expect.any(String),
    });
  });

  it('ignores a repeated Ready event (TaskTimedOut)', async () => {
    storeToken();
    await run(readyEvent());

    await expect(run(readyEvent())).resolves.toEqual({ action: 'ignored' });

    expect(sfn).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 2);
    expect(tasks.tasks.get(TOKEN)?.state).toBe('succeeded');
  });

  it('ignores an event for a token Step Functions no longer knows (InvalidToken)', async () => {
    params.set(names.token(CANDIDATE_ID), {
      type: 'SecureString',
      value: JSON.stringify({ token: 'stale-token', onRecoverableErrors: 'fail' }),
    });

    await expect(run(readyEvent())).resolves.toEqual({ action: 'ignored' });
  });

  it('keeps a final event that arrives before the token, for await-readiness to use', async () => {
    await expect(run(readyEvent())).resolves.toEqual({ action: 'kept' });

    const stored = params.get(names.earlyEvent(CANDIDATE_ID));
    expect(stored?.type).toBe('String');
    expect(JSON.parse(stored?.value ?? '{}')).toEqual({
      detailType: 'Instance Ready',
      detail: { instanceId: CANDIDATE_ID, status: 'done', exitCode: 0, errors: [] },
      receivedAt: expect.any(String),
    });
    expect(sfn).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 0);
  });

  it('completes the task itself when the token is stored while it keeps the event (closing the race)', async () => {
    ssm.reset();
    params = fakeParameters(ssm, {
      // await-readiness stores the token right after the signal wrote its early event
      afterPut: (name) => {
        if (name === names.earlyEvent(CANDIDATE_ID)) storeToken();
      },
    });

    await expect(run(readyEvent())).resolves.toEqual({ action: 'succeeded' });

    expect(tasks.tasks.get(TOKEN)?.state).toBe('succeeded');
  });

  it('keeps the early event within the 4 KB of a Standard parameter, first errors first', async () => {
    const errors = Array.from({ length: 40 }, (_, i) => `error ${i}: ${'x'.repeat(300)}`);

    await run(agentEvent('Instance Failed', { status: 'error', exitCode: 1, errors }));

    const value = params.get(names.earlyEvent(CANDIDATE_ID))?.value ?? '';
    expect(Buffer.byteLength(value)).toBeLessThanOrEqual(4096);
    expect(JSON.parse(value).detail.errors[0]).toBe(errors[0]);
    expect(ssm).toHaveReceivedCommandWith(PutParameterCommand, { Type: 'String', Overwrite: true });
  });

  it.each([
    ['another source', { ...readyEvent(), source: 'aws.ec2' }],
    ['an unknown detail-type', agentEvent('Instance Rebooted')],
    ['a malformed instance id', agentEvent('Instance Ready', { instanceId: 'not-an-instance' })],
    ['no detail at all', { source: 'understudy.agent', 'detail-type': 'Instance Ready' }],
  ])('logs and ignores %s', async (_label, e) => {
    await expect(run(e)).resolves.toEqual({ action: 'ignored' });

    expect(ssm).toHaveReceivedCommandTimes(PutParameterCommand, 0);
    expect(sfn).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 0);
  });

  it('retries (Transient) when Step Functions throttles, without quoting the token', async () => {
    storeToken();
    sfn.on(SendTaskSuccessCommand).rejects(
      new SFNServiceException({
        name: 'ThrottlingException',
        $fault: 'client',
        $metadata: {},
        message: `Rate exceeded for ${TOKEN}`,
      }),
    );

    const error = (await run(readyEvent()).then(
      () => undefined,
      (e: unknown) => e,
    )) as Error;

    expect(error).toMatchObject({ name: 'Transient' });
    expect(error.message).not.toContain(TOKEN);
    expect(error.cause).toBeUndefined();
  });

  it('never logs the token, even at DEBUG and when Step Functions quotes it in an error', async () => {
    process.env.POWERTOOLS_LOG_LEVEL = 'DEBUG';
    logger.setLogLevel('DEBUG');
    const logs = captureLogs();
    try {
      storeToken();
      await run(agentEvent('Instance Progress'));
      await run(readyEvent());
      await run(readyEvent()); // TaskTimedOut, whose message contains the token
      sfn.on(SendTaskHeartbeatCommand).rejects(
        new SFNServiceException({
          name: 'AccessDeniedException',
          $fault: 'client',
          $metadata: {},
          message: `denied ${TOKEN}`,
        }),
      );
      await run(agentEvent('Instance Progress')).catch(() => undefined);
    } finally {
      logs.restore();
      logger.setLogLevel('SILENT');
      process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    }

    expect(logs.text()).toContain(CANDIDATE_ID);
    expect(logs.text()).toContain('TaskTimedOut');
    expect(logs.text()).not.toContain(TOKEN);
    expect(logs.text()).not.toContain('secret-token');
  });

  it('runs end to end through the Lambda handler, trusting the certificates the stack configured', async () => {
    process.env.PARAMETER_PREFIX = PREFIX;
    process.env[IDENTITY_KEYS_VARIABLE] = identityKeysVariable({
      [EVENT_REGION]: sandboxIdentitySigner().certificatePem,
    });
    storeToken();

    try {
      await expect(handler(readyEvent(), lambdaContext())).resolves.toEqual({ action: 'succeeded' });
    } finally {
      delete process.env[IDENTITY_KEYS_VARIABLE];
    }
  });
});

describe('the signal handler at cold start', () => {
  it('fails its first invocation, naming the variable, when the identity keys the stack wrote are garbled', async () => {
    process.env.PARAMETER_PREFIX = PREFIX;
    process.env[IDENTITY_KEYS_VARIABLE] = '{"eu-west-1":["bm90IGEga2V5"]}';
    try {
      await jest.isolateModulesAsync(async () => {
        const fresh = await import('../../lambdas/signal/handler');
        await expect(fresh.handler(readyEvent(), lambdaContext())).rejects.toThrow(
          `environment is misconfigured (redeploy the stack): ${IDENTITY_KEYS_VARIABLE}`,
        );
      });
    } finally {
      delete process.env[IDENTITY_KEYS_VARIABLE];
    }
    expect(sfn).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 0);
  });
});

describe('signal authenticity', () => {
  /** A final event whose identity was made by someone else than EC2 (here: the sandbox) for the candidate. */
  const forged = (detailType = 'Instance Ready', extra: Record<string, unknown> = {}) => {
    const genuine = identityOf(CANDIDATE_ID);
    return agentEvent(detailType, {
      status: detailType === 'Instance Ready' ? 'done' : 'error',
      exitCode: detailType === 'Instance Ready' ? 0 : 1,
      identity: { document: genuine.document, signature: forger.sign(genuine.document) },
      ...extra,
    });
  };

  const expectNothingDone = () => {
    expect(sfn).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 0);
    expect(sfn).toHaveReceivedCommandTimes(SendTaskFailureCommand, 0);
    expect(ssm).toHaveReceivedCommandTimes(PutParameterCommand, 0);
  };

  it('rejects an Instance Ready for the awaited candidate signed with another key, leaving its task open', async () => {
    storeToken();

    await expect(run(forged())).resolves.toEqual({ action: 'rejected' });

    expect(tasks.tasks.get(TOKEN)?.state).toBe('open');
    expectNothingDone();
  });

  it('rejects a forged Instance Failed too: it cannot roll back a good box', async () => {
    storeToken();

    await expect(run(forged('Instance Failed'))).resolves.toEqual({ action: 'rejected' });

    expect(tasks.tasks.get(TOKEN)?.state).toBe('open');
    expectNothingDone();
  });

  it('rejects a final event that carries no identity, reading nothing', async () => {
    storeToken();

    await expect(run(readyEvent({ identity: undefined }))).resolves.toEqual({ action: 'rejected' });

    expect(ssm).toHaveReceivedCommandTimes(GetParameterCommand, 0);
    expectNothingDone();
  });

  it("rejects the old box's genuine identity sent in the candidate's name", async () => {
    storeToken();

    await expect(run(readyEvent({ identity: identityOf(OLD_ID) }))).resolves.toEqual({ action: 'rejected' });

    expect(tasks.tasks.get(TOKEN)?.state).toBe('open');
  });

  it('rejects a genuine identity from another account', async () => {
    storeToken();

    await expect(
      run(readyEvent({ identity: identityOf(CANDIDATE_ID, { accountId: '999999999999' }) })),
    ).resolves.toEqual({ action: 'rejected' });

    expectNothingDone();
  });

  it('rejects a forged event before keeping anything for a token not stored yet', async () => {
    await expect(run(forged())).resolves.toEqual({ action: 'rejected' });

    expect(params.size).toBe(0);
    expect(ec2).toHaveReceivedCommandTimes(DescribeInstancesCommand, 0);
  });

  it('logs the rejection at WARN with the reason and the instance, never the document or the signature', async () => {
    process.env.POWERTOOLS_LOG_LEVEL = 'DEBUG';
    logger.setLogLevel('DEBUG');
    const logs = captureLogs();
    const event = forged();
    try {
      storeToken();
      await run(event);
    } finally {
      logs.restore();
      logger.setLogLevel('SILENT');
      process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    }

    const entries = logs
      .text()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const rejection = entries.find(
      (entry) => entry.message === 'rejected a readiness event whose instance identity does not check out',
    );
    expect(rejection).toMatchObject({
      level: 'WARN',
      instance: CANDIDATE_ID,
      reason: expect.stringContaining('does not verify'),
    });
    const identity = event.detail.identity as { document: string; signature: string };
    expect(logs.text()).not.toContain(identity.signature.slice(0, 40));
    expect(logs.text()).not.toContain('"pendingTime"');
  });

  it('heartbeats on a progress event, which carries no identity', async () => {
    storeToken();

    await expect(run(agentEvent('Instance Progress', { status: 'running' }))).resolves.toEqual({
      action: 'heartbeat',
    });
  });
});

describe('final events for an instance that is not a candidate', () => {
  it('keeps nothing for an instance tagged as the serving box (the old box booted again by a rollback)', async () => {
    ec2.reset();
    describeAsCandidates(ec2, 'serving');

    await expect(run(readyEvent())).resolves.toEqual({ action: 'ignored' });

    expect(ec2).toHaveReceivedCommandWith(DescribeInstancesCommand, { InstanceIds: [CANDIDATE_ID] });
    expect(ssm).toHaveReceivedCommandTimes(PutParameterCommand, 0);
    expect(params.size).toBe(0);
  });

  it('keeps nothing for an instance EC2 does not know', async () => {
    ec2.reset();
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });

    await expect(run(readyEvent())).resolves.toEqual({ action: 'ignored' });

    expect(params.size).toBe(0);
  });

  it('asks EC2 nothing when the token is stored: the awaited instance is the candidate', async () => {
    storeToken();

    await run(readyEvent());

    expect(ec2).toHaveReceivedCommandTimes(DescribeInstancesCommand, 0);
  });
});
