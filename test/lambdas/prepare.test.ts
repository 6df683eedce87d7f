import 'aws-sdk-client-mock-jest';
import { readdirSync } from 'node:fs';
import { GetObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import {
  DescribeInstanceInformationCommand,
  InvalidInstanceId,
  ListCommandsCommand,
  SendCommandCommand,
  SSMClient,
  SSMServiceException,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { handler } from '../../lambdas/prepare/handler';
import { localCheckCommands, prepare, prepareScript, tlsCommands } from '../../lambdas/prepare/prepare';
import { createClients } from '../../lambdas/shared/clients';
import { commandComment } from '../../lambdas/shared/commands';
import { runKeys } from '../../lambdas/shared/constants';
import {
  CANDIDATE_ID,
  EXECUTION_ARN,
  EXECUTION_NAME,
  fakeS3,
  lambdaContext,
  makeState,
  makeTarget,
  runScript,
  ssmReadyToSend,
} from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);
let s3: ReturnType<typeof fakeS3>;

beforeEach(() => {
  ssm.reset();
  s3 = fakeS3();
  s3.seedLock();
  ssmReadyToSend(ssm, 'cmd-new');
});

describe('prepare', () => {
  it("sends the local app check once, with the site's Host header, as AWS-RunShellScript", async () => {
    const result = await prepare(createClients(), makeState(makeTarget({ health: { path: '/healthz' } })));

    expect(result).toEqual({ command: { commandId: 'cmd-new', instanceId: CANDIDATE_ID } });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 1);
    expect(ssm).toHaveReceivedCommandWith(SendCommandCommand, {
      InstanceIds: [CANDIDATE_ID],
      DocumentName: 'AWS-RunShellScript',
      Comment: `understudy:${EXECUTION_NAME}:prepare`,
      TimeoutSeconds: 600,
      Parameters: {
        commands: [
          '#!/bin/bash',
          'set -euo pipefail',
          "curl -fsS --max-time 10 -H 'Host: www.example.com' 'http://127.0.0.1/healthz'",
        ],
        executionTimeout: ['600'],
      },
    });
  });

  it('renews the target lock before it acts', async () => {
    const before = s3.objects.get(runKeys.lock('web'))?.etag;

    await prepare(createClients(), makeState());

    expect(s3.objects.get(runKeys.lock('web'))?.etag).not.toBe(before);
    expect(JSON.parse(s3.objects.get(runKeys.lock('web'))?.text ?? '{}').owner).toBe(EXECUTION_ARN);
  });

  it('stops with LockLost and sends nothing when another execution holds the lock', async () => {
    s3.seedLock('arn:aws:states:eu-west-1:111122223333:execution:understudy-replace:other', 'other');

    await expect(prepare(createClients(), makeState())).rejects.toMatchObject({ name: 'LockLost' });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it('retries (Transient) when S3 throttles the lock renewal, and sends nothing yet', async () => {
    s3.mock.on(GetObjectCommand).rejects(
      new S3ServiceException({
        name: 'SlowDown',
        $fault: 'server',
        $metadata: { httpStatusCode: 503 },
        message: 'slow down',
      }),
    );

    await expect(prepare(createClients(), makeState())).rejects.toMatchObject({ name: 'Transient' });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it('reuses a command already sent by an earlier attempt', async () => {
    ssm.on(ListCommandsCommand).resolves({
      Commands: [
        { CommandId: 'cmd-other', Comment: 'understudy:another-run:prepare' },
        { CommandId: 'cmd-earlier', Comment: `understudy:${EXECUTION_NAME}:prepare` },
      ],
    });

    const result = await prepare(createClients(), makeState());

    expect(result.command.commandId).toBe('cmd-earlier');
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
    expect(ssm).toHaveReceivedCommandWith(ListCommandsCommand, { InstanceId: CANDIDATE_ID });
  });

  it('pages through ListCommands before deciding that no earlier attempt sent the command', async () => {
    ssm
      .on(ListCommandsCommand)
      .resolvesOnce({ Commands: [{ CommandId: 'cmd-x', Comment: 'unrelated' }], NextToken: 'page-2' })
      .resolvesOnce({
        Commands: [{ CommandId: 'cmd-earlier', Comment: `understudy:${EXECUTION_NAME}:prepare` }],
      });

    const result = await prepare(createClients(), makeState());

    expect(result.command.commandId).toBe('cmd-earlier');
    expect(ssm).toHaveReceivedCommandWith(ListCommandsCommand, { NextToken: 'page-2' });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it.each([
    ['not registered yet', []],
    ['ConnectionLost', [{ InstanceId: CANDIDATE_ID, PingStatus: 'ConnectionLost' as const }]],
  ])('polls with AgentNotOnline while the SSM agent is %s', async (_label, list) => {
    ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: list });

    await expect(prepare(createClients(), makeState())).rejects.toMatchObject({
      name: 'AgentNotOnline',
      message: expect.stringContaining(CANDIDATE_ID),
    });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it('treats InvalidInstanceId from SendCommand as an agent that has not registered yet', async () => {
    ssm
      .on(SendCommandCommand)
      .rejects(new InvalidInstanceId({ message: 'Instances not in a valid state', $metadata: {} }));

    await expect(prepare(createClients(), makeState())).rejects.toMatchObject({ name: 'AgentNotOnline' });
  });

  it('surfaces throttling as Transient for the state machine to retry', async () => {
    ssm.on(SendCommandCommand).rejects(
      new SSMServiceException({
        name: 'ThrottlingException',
        $fault: 'client',
        $metadata: {},
        message: 'Rate exceeded',
      }),
    );

    await expect(prepare(createClients(), makeState())).rejects.toMatchObject({ name: 'Transient' });
  });

  it('fails with CommandFailed naming the call when SSM refuses the command', async () => {
    ssm.on(SendCommandCommand).rejects(
      new SSMServiceException({
        name: 'InvalidDocument',
        $fault: 'client',
        $metadata: {},
        message: 'no such document',
      }),
    );

    await expect(prepare(createClients(), makeState())).rejects.toMatchObject({
      name: 'CommandFailed',
      message: expect.stringMatching(/SendCommand for i-0b.*InvalidDocument/),
    });
  });

  it('runs end to end through the Lambda handler', async () => {
    const result = await handler(makeState(), lambdaContext());

    expect(result).toEqual({ command: { commandId: 'cmd-new', instanceId: CANDIDATE_ID } });
  });

  it('refuses an event without a candidate, naming the field', async () => {
    const { launch: _launch, ...withoutLaunch } = makeState();

    await expect(handler(withoutLaunch, lambdaContext())).rejects.toMatchObject({
      name: 'InvalidInput',
      message: expect.stringContaining('event.launch'),
    });
  });
});

describe('the local app check script', () => {
  // A stand-in curl that answers with $BODY, or fails like `curl -f` on an error status.
  // The body goes through a quoted heredoc so the stand-in itself never expands it.
  const curl = (body: string, exit = 0) =>
    exit
      ? `echo 'curl: (22) The requested URL returned error: 502' >&2; exit ${exit}`
      : `cat <<'END_OF_BODY'\n${body}\nEND_OF_BODY`;

  it('passes when the app answers with the expected text', async () => {
    const lines = prepareScript(makeTarget({ health: { bodyContains: 'all good' } }));

    const run = await runScript(lines, { curl: curl('<p>all good</p>') });

    expect(run.code).toBe(0);
  });

  it('fails when the body lacks the expected text', async () => {
    const lines = prepareScript(makeTarget({ health: { bodyContains: 'all good' } }));

    const run = await runScript(lines, { curl: curl('<p>maintenance</p>') });

    expect(run.code).toBe(1);
    expect(run.stderr).toContain('local app check failed');
  });

  it('fails when curl gets an error status', async () => {
    const run = await runScript(prepareScript(makeTarget()), { curl: curl('', 22) });

    expect(run.code).toBe(22);
    expect(run.stderr).toContain('502');
  });

  it('matches a hostile bodyContains literally and runs nothing from it', async () => {
    const needle = `'; touch pwned; echo '$(touch pwned2)`;
    const lines = prepareScript(makeTarget({ health: { bodyContains: needle } }));

    const run = await runScript(lines, { curl: curl(`before ${needle} after`) });

    expect(run.code).toBe(0);
    expect(readdirSync(run.dir)).toEqual([]);
  });

  it('has no TLS work before the switch in the http-01 and none modes', () => {
    expect(tlsCommands(makeTarget())).toEqual([]);
    expect(tlsCommands(makeTarget({ tls: { mode: 'none' } }))).toEqual([]);
  });

  it('quotes the Host header and the URL as single words', () => {
    expect(localCheckCommands(makeTarget({ health: { path: '/a-b/c.html' } }))).toEqual([
      "curl -fsS --max-time 10 -H 'Host: www.example.com' 'http://127.0.0.1/a-b/c.html'",
    ]);
  });
});

describe('commandComment', () => {
  it('keeps the longest execution names within the 100-character Comment limit, still unique per execution', () => {
    const a = commandComment(`${'a'.repeat(79)}1`, 'certificate');
    const b = commandComment(`${'a'.repeat(79)}2`, 'certificate');

    expect(a.length).toBeLessThanOrEqual(100);
    expect(a).not.toBe(b);
    expect(a.endsWith(':certificate')).toBe(true);
  });
});
