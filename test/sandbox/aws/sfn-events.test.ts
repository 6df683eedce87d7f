import { DescribeSubnetsCommand } from '@aws-sdk/client-ec2';
import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import {
  InvalidToken,
  SendTaskFailureCommand,
  SendTaskSuccessCommand,
  TaskTimedOut,
} from '@aws-sdk/client-sfn';
import { cloneRequest, launch, rejectionOf, useWorld } from './helpers';

const world = useWorld();

describe('Step Functions callbacks', () => {
  it('resolves the waiting task once and answers a repeated SendTaskSuccess with TaskTimedOut', async () => {
    const completion = world.sandbox.registerTaskToken('token-1');
    await world.aws.sfn.send(new SendTaskSuccessCommand({ taskToken: 'token-1', output: '{"ready":true}' }));

    const repeat = await rejectionOf(
      world.aws.sfn.send(new SendTaskSuccessCommand({ taskToken: 'token-1', output: '{}' })),
    );

    await expect(completion).resolves.toEqual({ ready: true });
    expect(repeat).toBeInstanceOf(TaskTimedOut);
    expect(repeat.name).toBe('TaskTimedOut');
  });

  it('answers InvalidToken to a callback with a token it never issued', async () => {
    const error = await rejectionOf(
      world.aws.sfn.send(new SendTaskSuccessCommand({ taskToken: 'never-issued', output: '{}' })),
    );

    expect(error).toBeInstanceOf(InvalidToken);
  });

  it('answers TaskTimedOut to a callback once the harness closed the task', async () => {
    const completion = world.sandbox.registerTaskToken('token-3');
    completion.catch(() => undefined);
    world.sandbox.closeTaskToken('token-3');

    const late = await rejectionOf(
      world.aws.sfn.send(new SendTaskSuccessCommand({ taskToken: 'token-3', output: '{}' })),
    );

    expect(late).toBeInstanceOf(TaskTimedOut);
  });

  it('rejects the waiting task with the error name and cause of SendTaskFailure', async () => {
    const completion = world.sandbox.registerTaskToken('token-2');

    await world.aws.sfn.send(
      new SendTaskFailureCommand({
        taskToken: 'token-2',
        error: 'InstanceFailed',
        cause: 'cloud-init exit 1',
      }),
    );

    await expect(completion).rejects.toMatchObject({ name: 'InstanceFailed', message: 'cloud-init exit 1' });
  });
});

describe('EventBridge', () => {
  it('delivers a put event to the matching rule only and reports malformed entries', async () => {
    const ready: unknown[] = [];
    const other: unknown[] = [];
    world.sandbox.addRule(
      'bus',
      { source: ['understudy.agent'], 'detail-type': ['Instance Ready'] },
      async (e) => {
        ready.push(e);
      },
    );
    world.sandbox.addRule(
      'bus',
      { source: ['understudy.agent'], detail: { status: ['error'] } },
      async (e) => {
        other.push(e);
      },
    );

    const out = await world.aws.events.send(
      new PutEventsCommand({
        Entries: [
          {
            EventBusName: 'bus',
            Source: 'understudy.agent',
            DetailType: 'Instance Ready',
            Detail: '{"status":"done"}',
          },
          {
            EventBusName: 'bus',
            Source: 'understudy.agent',
            DetailType: 'Instance Ready',
            Detail: 'not json',
          },
        ],
      }),
    );
    await world.sandbox.clock.sleep(1);

    expect(out.FailedEntryCount).toBe(1);
    expect(out.Entries?.[1]?.ErrorCode).toBe('MalformedDetail');
    expect(ready).toEqual([
      expect.objectContaining({ source: 'understudy.agent', detail: { status: 'done' } }),
    ]);
    expect(other).toHaveLength(0);
  });

  it('carries the readiness agent’s progress and final events from a booting box', async () => {
    const seen: { type: string; detail: Record<string, unknown> }[] = [];
    world.sandbox.addRule(world.sandbox.agentBusName, { source: ['understudy.agent'] }, async (e) => {
      const event = e as { 'detail-type': string; detail: Record<string, unknown> };
      seen.push({ type: event['detail-type'], detail: event.detail });
    });
    const imageId = world.sandbox.registerImage({ cloudInit: 'recoverable', app: 'healthy', bootMs: 70_000 });
    const candidate = await launch(world, await cloneRequest(world, imageId));

    await world.sandbox.clock.sleep(10_000 + 75_000);

    expect(seen.map((s) => s.type)).toEqual(['Instance Progress', 'Instance Progress', 'Instance Ready']);
    expect(seen[2]?.detail).toMatchObject({ instanceId: candidate, status: 'degraded', exitCode: 2 });
  });

  it('sends no readiness event from a box that cannot reach EventBridge', async () => {
    const seen: unknown[] = [];
    world.sandbox.addRule(world.sandbox.agentBusName, { source: ['understudy.agent'] }, async (e) => {
      seen.push(e);
    });
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
    const isolated = await startIsolated(imageId);

    await world.sandbox.clock.sleep(80_000);

    expect(isolated).toMatch(/^i-/);
    expect(seen).toHaveLength(0);
  });
});

/** A candidate in the subnet without a NAT route and without a public IP: no egress at all. */
const startIsolated = async (imageId: string) => {
  const request = await cloneRequest(world, imageId);
  const subnets = await world.aws.ec2.send(
    new DescribeSubnetsCommand({ Filters: [{ Name: 'tag:Name', Values: ['sandbox-igw'] }] }),
  );
  return launch(world, { ...request, SubnetId: subnets.Subnets?.[0]?.SubnetId });
};
