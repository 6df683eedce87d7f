import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  GetParameterCommand,
  InvalidInstanceId,
  InvocationDoesNotExist,
  ListCommandsCommand,
  ParameterAlreadyExists,
  ParameterNotFound,
  PutParameterCommand,
  SendCommandCommand,
} from '@aws-sdk/client-ssm';
import { cloneRequest, launch, rejectionOf, useWorld } from './helpers';

const world = useWorld();

const send = (instanceId: string, commands: string[], comment = 'test') =>
  world.aws.ssm.send(
    new SendCommandCommand({
      DocumentName: 'AWS-RunShellScript',
      InstanceIds: [instanceId],
      Comment: comment,
      Parameters: { commands },
    }),
  );
const invocation = (commandId: string, instanceId: string) =>
  world.aws.ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }));

describe('SSM Run Command', () => {
  it('answers InvocationDoesNotExist right after SendCommand, and the terminal status only after the script’s declared time', async () => {
    const instanceId = world.target.oldInstanceId;
    const sent = await send(instanceId, [
      'set -euo pipefail',
      'echo "hello from $(basename "$PWD")"',
      'echo "warming up" >&2',
      // The stand-in convention: a script declares virtual time it took (like certbot's ~20 s).
      'echo 5000 >> "$SANDBOX_VTIME_FILE"',
      'exit 3',
    ]);
    const commandId = sent.Command?.CommandId ?? '';

    const early = await rejectionOf(invocation(commandId, instanceId));
    expect(early).toBeInstanceOf(InvocationDoesNotExist);

    await world.sandbox.clock.sleep(2_000);
    expect(await invocation(commandId, instanceId)).toMatchObject({
      Status: 'InProgress',
      StatusDetails: 'In Progress',
    });

    await world.sandbox.clock.sleep(7_000);
    const done = await invocation(commandId, instanceId);
    expect(done).toMatchObject({ Status: 'Failed', ResponseCode: 3, StandardErrorContent: 'warming up\n' });
    expect(done.StandardOutputContent).toMatch(/^hello from i-[0-9a-f]+-/);
    const listed = await world.aws.ssm.send(new ListCommandsCommand({ InstanceId: instanceId }));
    expect(listed.Commands?.[0]).toMatchObject({ CommandId: commandId, Comment: 'test', Status: 'Failed' });
  });

  it('runs the script only once the agent picked the command up: nothing of it happens while Pending', async () => {
    const instanceId = world.target.oldInstanceId;
    const marker = join(world.sandbox.boxes.dirOf(instanceId), 'ran');
    const sent = await send(instanceId, ['touch "$SANDBOX_INSTANCE_DIR/ran"']);

    await world.sandbox.clock.sleep(1_200);
    expect(existsSync(marker)).toBe(false);
    expect((await invocation(sent.Command?.CommandId ?? '', instanceId)).Status).toBe('Pending');

    await world.sandbox.clock.sleep(5_000);
    expect(existsSync(marker)).toBe(true);
  });

  it('reports a script that outruns its executionTimeout as TimedOut, "Execution Timed Out"', async () => {
    const sent = await world.aws.ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [world.target.oldInstanceId],
        Parameters: { commands: ['echo 90000 >> "$SANDBOX_VTIME_FILE"'], executionTimeout: ['60'] },
      }),
    );
    await world.sandbox.clock.sleep(70_000);

    const done = await invocation(sent.Command?.CommandId ?? '', world.target.oldInstanceId);

    expect(done).toMatchObject({ Status: 'TimedOut', StatusDetails: 'Execution Timed Out' });
  });

  it('lets `cloud-init status --wait` block until the boot ends and report how it ended', async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'error', app: 'broken', bootMs: 60_000 });
    const candidate = await launch(world, await cloneRequest(world, imageId));
    // running at ~10 s, the SSM agent online 20 s later, cloud-init over at ~70 s.
    await world.sandbox.clock.sleep(35_000);
    const sent = await send(candidate, ['cloud-init status --wait']);
    const commandId = sent.Command?.CommandId ?? '';

    await world.sandbox.clock.sleep(30_000);
    expect((await invocation(commandId, candidate)).Status).toBe('InProgress');
    await world.sandbox.clock.sleep(10_000);
    const done = await invocation(commandId, candidate);

    expect(done).toMatchObject({
      Status: 'Failed',
      ResponseCode: 1,
      StandardOutputContent: 'status: error\n',
    });
  });

  it('tells the script whether the Elastic IP points at its box', async () => {
    const sent = await send(world.target.oldInstanceId, ['echo "eip=$SANDBOX_EIP_HERE"']);
    await world.sandbox.clock.sleep(5_000);

    const done = await invocation(sent.Command?.CommandId ?? '', world.target.oldInstanceId);

    expect(done).toMatchObject({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'eip=1\n' });
  });

  it('refuses SendCommand with InvalidInstanceId until the new box’s agent is Online', async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
    const candidate = await launch(world, await cloneRequest(world, imageId));
    await world.sandbox.clock.sleep(12_000);

    const refused = await rejectionOf(send(candidate, ['true']));
    expect(refused).toBeInstanceOf(InvalidInstanceId);

    await world.sandbox.clock.sleep(25_000);
    const info = await world.aws.ssm.send(
      new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [candidate] }] }),
    );
    expect(info.InstanceInformationList?.[0]).toMatchObject({ InstanceId: candidate, PingStatus: 'Online' });
    await expect(send(candidate, ['true'])).resolves.toHaveProperty('Command.CommandId');
  });
});

describe('SSM Parameter Store', () => {
  it('refuses to overwrite without Overwrite, and hides a SecureString without WithDecryption', async () => {
    const put = (Overwrite?: boolean) =>
      world.aws.ssm.send(
        new PutParameterCommand({
          Name: '/u/tokens/i-1',
          Value: 'secret-token',
          Type: 'SecureString',
          Overwrite,
        }),
      );
    await put();

    expect(await rejectionOf(put())).toBeInstanceOf(ParameterAlreadyExists);
    await expect(put(true)).resolves.toMatchObject({ Version: 2 });
    const hidden = await world.aws.ssm.send(new GetParameterCommand({ Name: '/u/tokens/i-1' }));
    const shown = await world.aws.ssm.send(
      new GetParameterCommand({ Name: '/u/tokens/i-1', WithDecryption: true }),
    );
    expect(hidden.Parameter?.Value).not.toBe('secret-token');
    expect(shown.Parameter?.Value).toBe('secret-token');
  });

  it('answers ParameterNotFound for a missing parameter', async () => {
    const error = await rejectionOf(world.aws.ssm.send(new GetParameterCommand({ Name: '/u/missing' })));

    expect(error).toBeInstanceOf(ParameterNotFound);
    expect(error.name).toBe('ParameterNotFound');
  });
});
