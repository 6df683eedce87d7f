import 'aws-sdk-client-mock-jest';
import { EC2Client } from '@aws-sdk/client-ec2';
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { awaitReadiness } from '../../lambdas/await-readiness/await-readiness';
import { handler } from '../../lambdas/await-readiness/handler';
import { createClients } from '../../lambdas/shared/clients';
import { parameterNames } from '../../lambdas/shared/constants';
import { logger } from '../../lambdas/shared/logger';
import { signal } from '../../lambdas/signal/signal';
import {
  agentEvent,
  CANDIDATE_ID,
  captureLogs,
  describeAsCandidates,
  fakeParameters,
  fakeS3,
  fakeTasks,
  fixtureTrust,
  lambdaContext,
  makeState,
  makeTarget,
  PREFIX,
  readyEvent,
} from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);
const sfn = mockClient(SFNClient);
const ec2 = mockClient(EC2Client);
const names = parameterNames(PREFIX);
const TOKEN = `AQCEAAAAKgAAAAMAAAAA${'readiness-token-'.repeat(20)}`;

let params: ReturnType<typeof fakeParameters>;
let tasks: ReturnType<typeof fakeTasks>;

const input = (target = makeTarget()) => ({ taskToken: tasks.issue(TOKEN), state: makeState(target) });
const awaitIt = (i = input()) => awaitReadiness(createClients(), PREFIX, i);
const signalIt = (e: unknown = readyEvent()) =>
  signal(createClients(), { parameterPrefix: PREFIX, trust: fixtureTrust() }, e);

beforeEach(() => {
  ssm.reset();
  sfn.reset();
  ec2.reset();
  describeAsCandidates(ec2);
  fakeS3().seedLock();
  params = fakeParameters(ssm);
  tasks = fakeTasks(sfn);
});

describe('awaitReadiness', () => {
  it("stores the token as a SecureString with the target's recoverable-errors policy, and waits", async () => {
    const result = await awaitIt(input(makeTarget({ readiness: { onRecoverableErrors: 'accept' } })));

    expect(result).toEqual({ stored: true, completedFromEarlyEvent: false });
    expect(ssm).toHaveReceivedCommandWith(PutParameterCommand, {
      Name: names.token(CANDIDATE_ID),
      Type: 'SecureString',
      Overwrite: true,
    });
    expect(JSON.parse(params.get(names.token(CANDIDATE_ID))?.value ?? '{}')).toEqual({
      token: TOKEN,
      onRecoverableErrors: 'accept',
    });
    expect(tasks.tasks.get(TOKEN)?.state).toBe('open');
  });

  it('overwrites the token of an earlier attempt (a retried task gets a new token)', async () => {
    params.set(names.token(CANDIDATE_ID), {
      type: 'SecureString',
      value: '{"token":"old","onRecoverableErrors":"fail"}',
    });

    await awaitIt();

    expect(JSON.parse(params.get(names.token(CANDIDATE_ID))?.value ?? '{}').token).toBe(TOKEN);
  });

  it('completes the task from an event that arrived before the token', async () => {
    await signalIt(readyEvent());

    const result = await awaitIt();

    expect(result).toEqual({ stored: true, completedFromEarlyEvent: true });
    expect(tasks.tasks.get(TOKEN)).toMatchObject({
      state: 'succeeded',
      output: { status: 'done', exitCode: 0, errors: [] },
    });
  });

  it('fails the task from an Instance Failed event that arrived before the token', async () => {
    await signalIt(
      agentEvent('Instance Failed', { status: 'error', exitCode: 1, errors: ['runcmd failed'] }),
    );

    await awaitIt();

    expect(sfn).toHaveReceivedCommandWith(SendTaskFailureCommand, { error: 'ReadinessFailed' });
    expect(tasks.tasks.get(TOKEN)?.cause).toContain('runcmd failed');
  });

  it('dates readiness by when the early event arrived, not by when the token was stored', async () => {
    await signalIt(readyEvent());
    const kept = JSON.parse(params.get(names.earlyEvent(CANDIDATE_ID))?.value ?? '{}') as {
      receivedAt?: string;
    };
    await new Promise((resolve) => setTimeout(resolve, 20));

    await awaitIt();

    expect(kept.receivedAt).toEqual(expect.any(String));
    expect(tasks.tasks.get(TOKEN)?.output).toMatchObject({ readyAt: kept.receivedAt });
  });

  it("applies the target's policy to an early exit-code-2 event", async () => {
    await signalIt(readyEvent({ exitCode: 2, errors: ['deprecated'] }));

    await awaitIt(input(makeTarget({ readiness: { onRecoverableErrors: 'accept' } })));

    expect(tasks.tasks.get(TOKEN)?.state).toBe('succeeded');
  });

  it('stops with LockLost, storing nothing, when another execution took the lock', async () => {
    fakeS3().seedLock('arn:aws:states:eu-west-1:111122223333:execution:understudy-replace:other', 'other');

    await expect(awaitIt()).rejects.toMatchObject({ name: 'LockLost' });
    expect(params.size).toBe(0);
  });

  it('never logs the token, even at DEBUG', async () => {
    process.env.POWERTOOLS_LOG_LEVEL = 'DEBUG';
    logger.setLogLevel('DEBUG');
    const logs = captureLogs();
    try {
      await signalIt();
      process.env.PARAMETER_PREFIX = PREFIX;
      await handler(input(), lambdaContext());
      await awaitIt(); // the task is closed now: TaskTimedOut quotes the token
    } finally {
      logs.restore();
      logger.setLogLevel('SILENT');
      process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    }

    expect(logs.text()).toContain('stored the readiness task token');
    expect(logs.text()).not.toContain(TOKEN);
    expect(logs.text()).not.toContain('readiness-token');
  });
});

describe('the readiness hand-off between await-readiness and the signal', () => {
  it('completes exactly once when the token is stored between the signal reading it and keeping the event', async () => {
    // Interleaving: signal reads the token (absent) → await-readiness stores the token and finds no early
    // event → signal keeps the event, reads the token again (present) and completes the task.
    let raced = false;
    ssm.reset();
    params = fakeParameters(ssm, {
      afterRead: async (name) => {
        if (name !== names.token(CANDIDATE_ID) || raced) return;
        raced = true;
        await expect(awaitIt()).resolves.toEqual({ stored: true, completedFromEarlyEvent: false });
      },
    });

    await expect(signalIt()).resolves.toEqual({ action: 'succeeded' });

    expect(tasks.tasks.get(TOKEN)?.state).toBe('succeeded');
    expect(sfn).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 1);
  });

  it('is harmless when both sides see both records and both complete (TaskTimedOut on the second)', async () => {
    // Interleaving: signal reads the token (absent) and keeps the event → await-readiness stores the token,
    // finds the event and completes → the signal re-reads the token and completes again.
    ssm.reset();
    params = fakeParameters(ssm, {
      afterPut: async (name) => {
        if (name === names.earlyEvent(CANDIDATE_ID)) {
          await expect(awaitIt()).resolves.toEqual({ stored: true, completedFromEarlyEvent: true });
        }
      },
    });

    await expect(signalIt()).resolves.toEqual({ action: 'ignored' });

    expect(sfn).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 2);
    expect(tasks.tasks.get(TOKEN)?.state).toBe('succeeded');
  });

  it('completes when the token came first and the event later', async () => {
    await awaitIt();

    await expect(signalIt()).resolves.toEqual({ action: 'succeeded' });
    expect(sfn).toHaveReceivedCommandTimes(SendTaskSuccessCommand, 1);
  });
});
