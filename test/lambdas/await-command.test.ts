import 'aws-sdk-client-mock-jest';
import {
  GetCommandInvocationCommand,
  InvocationDoesNotExist,
  SSMClient,
  SSMServiceException,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { awaitCommand, OUTPUT_TAIL } from '../../lambdas/await-command/await-command';
import { handler } from '../../lambdas/await-command/handler';
import { createClients } from '../../lambdas/shared/clients';
import { CANDIDATE_ID, lambdaContext } from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);
const input = { command: { commandId: 'cmd-1', instanceId: CANDIDATE_ID }, purpose: 'certificate' };

beforeEach(() => ssm.reset());

describe('awaitCommand', () => {
  it('treats InvocationDoesNotExist as pending (the invocation is not visible right after SendCommand)', async () => {
    ssm.on(GetCommandInvocationCommand).rejects(new InvocationDoesNotExist({ message: '', $metadata: {} }));

    await expect(awaitCommand(createClients().ssm, input)).rejects.toMatchObject({ name: 'CommandPending' });
    expect(ssm).toHaveReceivedCommandWith(GetCommandInvocationCommand, {
      CommandId: 'cmd-1',
      InstanceId: CANDIDATE_ID,
    });
  });

  it.each(['Pending', 'InProgress', 'Delayed'] as const)(
    'polls again while the command is %s',
    async (Status) => {
      ssm.on(GetCommandInvocationCommand).resolves({ Status, StatusDetails: Status, ResponseCode: -1 });

      await expect(awaitCommand(createClients().ssm, input)).rejects.toMatchObject({
        name: 'CommandPending',
      });
    },
  );

  it("returns the tail of stdout on Success, where the script's conclusion is", async () => {
    const stdout = `${'x'.repeat(10_000)}\nCongratulations! Your certificate is installed.\n`;
    ssm
      .on(GetCommandInvocationCommand)
      .resolves({ Status: 'Success', ResponseCode: 0, StandardOutputContent: stdout });

    const result = await awaitCommand(createClients().ssm, input);

    expect(result.status).toBe('Success');
    expect(result.output.length).toBeLessThanOrEqual(OUTPUT_TAIL + 1);
    expect(result.output.endsWith('Congratulations! Your certificate is installed.')).toBe(true);
  });

  it("reports the command's stderr tail when certbot fails", async () => {
    const stderr = `${'noise line\n'.repeat(500)}Certbot failed to authenticate some domains (authenticator: nginx).\n`;
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 1,
      StandardOutputContent: 'Saving debug log',
      StandardErrorContent: stderr,
    });

    const error = (await awaitCommand(createClients().ssm, input).then(
      () => undefined,
      (e: unknown) => e,
    )) as Error;

    expect(error).toMatchObject({ name: 'CommandFailed' });
    expect(error.message).toMatch(new RegExp(`^certificate failed on ${CANDIDATE_ID}: Failed, exit 1: `));
    expect(error.message).toContain('Certbot failed to authenticate some domains');
    expect(error.message.length).toBeLessThan(1_300);
  });

  it.each([
    ['TimedOut', 'Execution Timed Out'],
    ['TimedOut', 'Delivery Timed Out'],
    ['Cancelled', 'Cancelled'],
    ['Cancelling', 'Cancelling'],
  ] as const)('fails a command that ended %s (%s)', async (Status, StatusDetails) => {
    ssm.on(GetCommandInvocationCommand).resolves({ Status, StatusDetails, ResponseCode: -1 });

    await expect(awaitCommand(createClients().ssm, input)).rejects.toMatchObject({
      name: 'CommandFailed',
      message: expect.stringContaining(`${StatusDetails}, exit -1: (no output)`),
    });
  });

  it('surfaces throttling as Transient', async () => {
    ssm.on(GetCommandInvocationCommand).rejects(
      new SSMServiceException({
        name: 'ThrottlingException',
        $fault: 'client',
        $metadata: {},
        message: 'Rate exceeded',
      }),
    );

    await expect(awaitCommand(createClients().ssm, input)).rejects.toMatchObject({ name: 'Transient' });
  });

  it('runs end to end through the Lambda handler with the ASL parameters', async () => {
    ssm
      .on(GetCommandInvocationCommand)
      .resolves({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'ok\n' });

    await expect(handler(input, lambdaContext())).resolves.toEqual({ status: 'Success', output: 'ok' });
  });
});
