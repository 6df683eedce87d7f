import {
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
} from '@aws-sdk/client-ec2';
import {
  CreateScheduleCommand,
  type CreateScheduleCommandInput,
  DeleteScheduleCommand,
  GetScheduleCommand,
} from '@aws-sdk/client-scheduler';
import { schedulerClient } from '../../../lambdas/shared/clients';
import { rejectionOf, useWorld } from './helpers';

const world = useWorld();
const ROLE = 'arn:aws:iam::123456789012:role/retirement';

// Built by the one client factory, so the sandbox's plugin routes it.
const scheduler = () => schedulerClient();
const request = (at: string, instanceId: string): CreateScheduleCommandInput => ({
  Name: `web-${instanceId}`,
  GroupName: 'retirement',
  ScheduleExpression: `at(${at})`,
  ScheduleExpressionTimezone: 'UTC',
  FlexibleTimeWindow: { Mode: 'OFF' },
  ActionAfterCompletion: 'DELETE',
  Target: {
    Arn: 'arn:aws:scheduler:::aws-sdk:ec2:terminateInstances',
    RoleArn: ROLE,
    Input: JSON.stringify({ InstanceIds: [instanceId] }),
  },
});
const stateOf = async (id: string) =>
  (await world.aws.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]
    ?.Instances?.[0]?.State?.Name;
const inAnHour = () => new Date(Date.now() + 3_600_000).toISOString().slice(0, 19);

describe('EventBridge Scheduler', () => {
  it('creates a one-time schedule once: the same name again is a ConflictException, GetSchedule shows it', async () => {
    world.sandbox.createScheduleGroup('retirement');
    const id = world.target.oldInstanceId;
    const at = inAnHour();
    await scheduler().send(new CreateScheduleCommand(request(at, id)));

    const again = await rejectionOf(scheduler().send(new CreateScheduleCommand(request(at, id))));
    const got = await scheduler().send(
      new GetScheduleCommand({ Name: `web-${id}`, GroupName: 'retirement' }),
    );

    expect(again.name).toBe('ConflictException');
    expect(got.ScheduleExpression).toBe(`at(${at})`);
    expect(got.Target?.Arn).toBe('arn:aws:scheduler:::aws-sdk:ec2:terminateInstances');
  });

  it('refuses a group that does not exist, and answers ResourceNotFoundException for a schedule that does not', async () => {
    const id = world.target.oldInstanceId;
    const noGroup = await rejectionOf(scheduler().send(new CreateScheduleCommand(request(inAnHour(), id))));
    const noSchedule = await rejectionOf(
      scheduler().send(new DeleteScheduleCommand({ Name: 'web-nothing', GroupName: 'default' })),
    );
    expect(noGroup.name).toBe('ResourceNotFoundException');
    expect(noSchedule.name).toBe('ResourceNotFoundException');
  });

  it('fires at its time as the role, at the next call, and deletes itself after completion', async () => {
    world.sandbox.createScheduleGroup('retirement');
    const id = world.target.oldInstanceId;
    world.sandbox.scheduler.registerRole(ROLE, (r) => r.action === 'ec2:TerminateInstances');
    await scheduler().send(new CreateScheduleCommand(request(inAnHour(), id)));

    expect(await stateOf(id)).toBe('running');
    await world.sandbox.clock.sleep(3_600_000 + 1_000);

    expect(await stateOf(id)).toBe('shutting-down');
    expect(world.sandbox.calls.filter((c) => c.via === 'scheduler').map((c) => c.action)).toEqual([
      'TerminateInstances',
    ]);
    expect(world.sandbox.scheduler.schedules.size).toBe(0);
  });

  it('does not act when the role refuses: the invocation records AccessDenied and the box stays', async () => {
    world.sandbox.createScheduleGroup('retirement');
    const id = world.target.oldInstanceId;
    await scheduler().send(new CreateScheduleCommand(request(inAnHour(), id)));
    await world.sandbox.clock.sleep(3_600_000 + 1_000);

    expect(await stateOf(id)).toBe('running');
    expect(world.sandbox.scheduler.invocations.map((i) => i.error)).toEqual(['AccessDenied']);
  });
});

describe('EC2 StartInstances and DescribeInstanceStatus', () => {
  it('starts a stopped box (pending, then running) and reports its checks initializing, then ok', async () => {
    const id = world.target.oldInstanceId;
    await world.aws.ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await world.sandbox.clock.sleep(20_000);
    expect(await stateOf(id)).toBe('stopped');

    const started = await world.aws.ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    expect(started.StartingInstances?.[0]?.CurrentState?.Name).toBe('pending');
    await world.sandbox.clock.sleep(11_000);
    expect(await stateOf(id)).toBe('running');
    const early = await world.aws.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
    await world.sandbox.clock.sleep(90_000);
    const later = await world.aws.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));

    expect(early.InstanceStatuses?.[0]?.InstanceStatus?.Status).toBe('initializing');
    expect(later.InstanceStatuses?.[0]?.InstanceStatus?.Status).toBe('ok');
    expect(later.InstanceStatuses?.[0]?.SystemStatus?.Status).toBe('ok');
  });

  it('refuses to start a box that is stopping', async () => {
    const id = world.target.oldInstanceId;
    await world.aws.ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    const error = await rejectionOf(world.aws.ec2.send(new StartInstancesCommand({ InstanceIds: [id] })));
    expect(error.name).toBe('IncorrectInstanceState');
  });
});
