import { DescribeAddressesCommand, DescribeInstancesCommand } from '@aws-sdk/client-ec2';
import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PublishCommand } from '@aws-sdk/client-sns';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { createClients } from '../../../lambdas/shared/clients';
import { httpGet } from '../../../lambdas/shared/http';
import { rejectionOf, useWorld } from './helpers';

const world = useWorld();

describe('Sandbox call log and faults', () => {
  it('logs every call and marks only the ones that change the account as mutating', async () => {
    await world.aws.ec2.send(new DescribeAddressesCommand({ AllocationIds: [world.target.allocationId] }));
    await world.aws.ssm.send(new PutParameterCommand({ Name: '/p', Value: 'v', Type: 'String' }));
    await rejectionOf(
      world.aws.ec2.send(
        new DescribeInstancesCommand({ InstanceIds: [world.target.oldInstanceId], DryRun: true }),
      ),
    );

    expect(world.sandbox.calls.map((c) => [c.service, c.action, c.mutating])).toEqual([
      ['ec2', 'DescribeAddresses', false],
      ['ssm', 'PutParameter', true],
      ['ec2', 'DescribeInstances', false],
    ]);
  });

  const publish = () =>
    world.aws.sns.send(
      new PublishCommand({ TopicArn: 'arn:aws:sns:eu-west-1:123456789012:t', Message: 'm' }),
    );

  it('lets the SDK retry a single injected ThrottlingException transparently, as against AWS', async () => {
    world.sandbox.injectFault({
      service: 'sns',
      action: 'Publish',
      nth: 2,
      fault: { error: 'ThrottlingException', message: 'Rate exceeded' },
    });

    await publish();
    const retried = await publish();
    await publish();

    expect(retried.$metadata.attempts).toBe(2);
    expect(world.sandbox.calls.map((c) => c.error)).toEqual([
      undefined,
      'ThrottlingException',
      undefined,
      undefined,
    ]);
    expect(world.sandbox.messages).toHaveLength(3);
  });

  it('surfaces a persistent ThrottlingException by name once the client’s 5 attempts are spent, backing off on the virtual clock', async () => {
    world.sandbox.injectFault({
      service: 'sns',
      action: 'Publish',
      fault: { error: 'ThrottlingException', message: 'Rate exceeded' },
    });
    const started = world.sandbox.clock.now();

    const error = await rejectionOf(publish());

    expect(error.name).toBe('ThrottlingException');
    expect(error.message).toBe('Rate exceeded');
    expect(error.$metadata).toMatchObject({ attempts: 5 });
    expect(world.sandbox.calls.map((c) => c.error)).toEqual(Array(5).fill('ThrottlingException'));
    expect(world.sandbox.clock.now()).toBeGreaterThan(started);
    expect(world.sandbox.messages).toHaveLength(0);
  });

  it('lets virtual time run past a hung call so the caller’s timeout can fire', async () => {
    world.sandbox.injectFault({ service: 'ec2', action: 'DescribeAddresses', fault: 'hang' });
    const started = world.sandbox.clock.now();

    const winner = await Promise.race([
      world.aws.ec2.send(new DescribeAddressesCommand({})).then(() => 'answered'),
      world.sandbox.clock.sleep(300_000).then(() => 'timed out'),
    ]);

    expect(winner).toBe('timed out');
    expect(world.sandbox.clock.now() - started).toBeGreaterThanOrEqual(300_000);
  });

  it('fails stop() with every error an event target threw, so a broken target cannot go unnoticed', async () => {
    world.sandbox.addRule('bus', { source: ['test'] }, async () => {
      throw new Error('target broke');
    });
    await world.aws.events.send(
      new PutEventsCommand({
        Entries: [{ EventBusName: 'bus', Source: 'test', DetailType: 'Ping', Detail: '{}' }],
      }),
    );
    await world.sandbox.clock.sleep(1);

    const error = await rejectionOf(world.sandbox.stop());

    expect(error).toBeInstanceOf(AggregateError);
    expect((error as unknown as AggregateError).errors).toEqual([
      expect.objectContaining({ message: 'target broke' }),
    ]);
  });

  it('fails every call with a clear error once stopped', async () => {
    const stale = createClients();
    await world.sandbox.stop();

    const error = await rejectionOf(stale.ec2.send(new DescribeAddressesCommand({})));

    expect(error.message).toMatch(/no sandbox is running/);
  });
});

describe('Sandbox seeded target', () => {
  it('serves the old box over HTTPS through the Elastic IP with a trusted certificate for the domain', async () => {
    const answer = await httpGet({
      address: world.target.publicIp,
      scheme: 'https',
      domain: 'web.example.test',
      path: '/',
      timeoutMs: 5_000,
    });

    expect(answer).toMatchObject({ ok: true, status: 200 });
    expect(answer.body).toContain(world.target.oldInstanceId);
    expect(answer.certificateDaysLeft).toBeGreaterThan(30);
  });

  it('describes the old box as Terraform left it: Name tag, encrypted 20 GiB gp3 root, EIP associated', async () => {
    const out = await world.aws.ec2.send(
      new DescribeInstancesCommand({ Filters: [{ Name: 'tag:Name', Values: ['web'] }] }),
    );
    const old = out.Reservations?.[0]?.Instances?.[0];
    const root = world.sandbox.ec2.volumes.get(old?.BlockDeviceMappings?.[0]?.Ebs?.VolumeId ?? '');

    expect(old).toMatchObject({
      InstanceId: world.target.oldInstanceId,
      State: { Name: 'running' },
      PublicIpAddress: world.target.publicIp,
    });
    expect(root).toMatchObject({ size: 20, volumeType: 'gp3', encrypted: true });
  });
});
