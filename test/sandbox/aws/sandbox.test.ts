import { DescribeAddressesCommand, DescribeInstancesCommand } from '@aws-sdk/client-ec2';
import { PublishCommand } from '@aws-sdk/client-sns';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { createClients } from '../../../lambdas/shared/clients';
import { rejectionOf, startWorld, type World } from './helpers';

let world: World;
beforeEach(async () => {
  world = await startWorld();
});
afterEach(async () => {
  await world.sandbox.stop();
});

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

  it('surfaces an injected ThrottlingException with that name, on the nth call only', async () => {
    world.sandbox.injectFault({
      service: 'sns',
      action: 'Publish',
      nth: 2,
      fault: { error: 'ThrottlingException', message: 'Rate exceeded' },
    });
    const publish = () =>
      world.aws.sns.send(
        new PublishCommand({ TopicArn: 'arn:aws:sns:eu-west-1:123456789012:t', Message: 'm' }),
      );

    await publish();
    const error = await rejectionOf(publish());
    await publish();

    expect(error.name).toBe('ThrottlingException');
    expect(error.message).toBe('Rate exceeded');
    expect(world.sandbox.calls.map((c) => c.error)).toEqual([undefined, 'ThrottlingException', undefined]);
    expect(world.sandbox.messages).toHaveLength(2);
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

  it('fails every call with a clear error once stopped', async () => {
    const stale = createClients();
    await world.sandbox.stop();

    const error = await rejectionOf(stale.ec2.send(new DescribeAddressesCommand({})));

    expect(error.message).toMatch(/no sandbox is running/);
  });
});
