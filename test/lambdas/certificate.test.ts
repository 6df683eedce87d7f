import 'aws-sdk-client-mock-jest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DescribeInstanceInformationCommand,
  ListCommandsCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { certificate, certificateScript } from '../../lambdas/certificate/certificate';
import { handler } from '../../lambdas/certificate/handler';
import { createClients } from '../../lambdas/shared/clients';
import {
  CANDIDATE_ID,
  EXECUTION_NAME,
  fakeS3,
  lambdaContext,
  makeState,
  makeTarget,
  runScript,
  ssmReadyToSend,
} from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);

beforeEach(() => {
  ssm.reset();
  fakeS3().seedLock();
  ssmReadyToSend(ssm, 'cmd-cert');
});

describe('certificate', () => {
  it('sends certbot for the domain with the ACME email, then checks and reloads nginx', async () => {
    const result = await certificate(createClients(), makeState());

    expect(result).toEqual({ command: { commandId: 'cmd-cert', instanceId: CANDIDATE_ID } });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 1);
    expect(ssm).toHaveReceivedCommandWith(SendCommandCommand, {
      DocumentName: 'AWS-RunShellScript',
      Comment: `understudy:${EXECUTION_NAME}:certificate`,
      TimeoutSeconds: 600,
      Parameters: {
        commands: [
          '#!/bin/bash',
          'set -euo pipefail',
          "certbot --nginx -d 'www.example.com' --non-interactive --agree-tos -m 'ops@example.com' --keep-until-expiring",
          'nginx -t',
          'systemctl reload nginx',
        ],
        executionTimeout: ['600'],
      },
    });
  });

  it('reuses a command already sent by an earlier attempt instead of running certbot twice', async () => {
    ssm.on(ListCommandsCommand).resolves({
      Commands: [
        { CommandId: 'cmd-prepare', Comment: `understudy:${EXECUTION_NAME}:prepare` },
        { CommandId: 'cmd-cert-1', Comment: `understudy:${EXECUTION_NAME}:certificate` },
      ],
    });

    const result = await certificate(createClients(), makeState());

    expect(result.command.commandId).toBe('cmd-cert-1');
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it('refuses a target that is not in http-01 mode and sends nothing', async () => {
    const state = makeState(makeTarget({ tls: { mode: 'none' } }));

    await expect(certificate(createClients(), state)).rejects.toMatchObject({
      name: 'InvalidInput',
      message: expect.stringContaining('http-01'),
    });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it('waits with AgentNotOnline when the agent lost its connection', async () => {
    ssm.on(DescribeInstanceInformationCommand).resolves({
      InstanceInformationList: [{ InstanceId: CANDIDATE_ID, PingStatus: 'ConnectionLost' }],
    });

    await expect(certificate(createClients(), makeState())).rejects.toMatchObject({ name: 'AgentNotOnline' });
  });

  it('runs end to end through the Lambda handler', async () => {
    await expect(handler(makeState(), lambdaContext())).resolves.toEqual({
      command: { commandId: 'cmd-cert', instanceId: CANDIDATE_ID },
    });
  });
});

describe('the certificate script', () => {
  const log = (dir: string) =>
    readFileSync(join(dir, '..', 'calls.log'), 'utf8')
      .trim()
      .split('\n');
  const standIns = (certbotExit: number) => ({
    certbot: `echo "certbot $*" >> "$STANDIN_LOG"; [ ${certbotExit} -eq 0 ] || echo 'Challenge failed for domain www.example.com' >&2; exit ${certbotExit}`,
    nginx: 'echo "nginx $*" >> "$STANDIN_LOG"',
    systemctl: 'echo "systemctl $*" >> "$STANDIN_LOG"',
  });

  it('reloads nginx only after certbot and the config check succeeded', async () => {
    const run = await runScript(certificateScript(makeTarget()), standIns(0));

    expect(run.code).toBe(0);
    expect(log(run.dir)).toEqual([
      'certbot --nginx -d www.example.com --non-interactive --agree-tos -m ops@example.com --keep-until-expiring',
      'nginx -t',
      'systemctl reload nginx',
    ]);
  });

  it('stops at a failed certbot and never reloads nginx', async () => {
    const run = await runScript(certificateScript(makeTarget()), standIns(1));

    expect(run.code).toBe(1);
    expect(run.stderr).toContain('Challenge failed');
    expect(log(run.dir)).toEqual([expect.stringMatching(/^certbot /)]);
  });
});
