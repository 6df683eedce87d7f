import 'aws-sdk-client-mock-jest';
import {
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  SFNClient,
  SFNServiceException,
} from '@aws-sdk/client-sfn';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { createClients } from '../../lambdas/shared/clients';
import { parameterNames } from '../../lambdas/shared/constants';
import { logger } from '../../lambdas/shared/logger';
import { handler } from '../../lambdas/signal/handler';
import { signal } from '../../lambdas/signal/signal';
import {
  agentEvent,
  CANDIDATE_ID,
  captureLogs,
  fakeParameters,
  fakeTasks,
  lambdaContext,
  PREFIX,
  readyEvent,
} from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);
const sfn = mockClient(SFNClient);
const names = parameterNames(PREFIX);
const TOKEN = `AQCEAAAAKgAAAAMAAAAA${'secret-token-'.repeat(20)}`;

let params: ReturnType<typeof fakeParameters>;
let tasks: ReturnType<typeof fakeTasks>;

const storeToken = (onRecoverableErrors: 'fail' | 'accept' = 'fail') =>
  params.set(names.token(CANDIDATE_ID), {
    type: 'SecureString',
    value: JSON.stringify({ token: tasks.issue(TOKEN), onRecoverableErrors }),
  });
const run = (e: unknown) => signal(createClients(), PREFIX, e);

beforeEach(() => {
  ssm.reset();
  sfn.reset();
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

  it('runs end to end through the Lambda handler', async () => {
    process.env.PARAMETER_PREFIX = PREFIX;
    storeToken();

    await expect(handler(readyEvent(), lambdaContext())).resolves.toEqual({ action: 'succeeded' });
  });
});
