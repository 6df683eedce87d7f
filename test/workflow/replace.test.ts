import { DescribeInstancesCommand, type Instance } from '@aws-sdk/client-ec2';
import { SendTaskSuccessCommand } from '@aws-sdk/client-sfn';
import { clients } from '../../lambdas/shared/clients';
import type { HandlerSet, WorkflowRun } from '../../sandbox/workflow';
import { outcomeMessages, startWorld, type World } from './helpers';

const instancesTagged = async (key: string, value: string): Promise<Instance[]> => {
  const out = await clients().ec2.send(
    new DescribeInstancesCommand({ Filters: [{ Name: `tag:${key}`, Values: [value] }] }),
  );
  return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
};
const instance = async (id: string): Promise<Instance | undefined> => {
  const out = await clients().ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
  return out.Reservations?.[0]?.Instances?.[0];
};
const tag = (i: Instance | undefined, key: string) => i?.Tags?.find((t) => t.Key === key)?.Value;
/** The error a Catch handed to `state` (its input's `$.error.Error`). */
const errorInto = (run: WorkflowRun, state: string) =>
  (run.inputs[state] as { error?: { Error?: string } } | undefined)?.error?.Error;

describe('a replacement on the sandbox account', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('replaces the box: EIP on the new instance, old box stopped and retired, one outcome message', async () => {
    world = await startWorld();
    const run = await world.run();

    expect(run.status).toBe('SUCCEEDED');
    expect(run.outcome).toBe('replaced');
    const candidates = await instancesTagged('understudy:execution', run.executionArn.split(':').pop() ?? '');
    expect(candidates).toHaveLength(1);
    const candidate = candidates[0] as Instance;
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(candidate.InstanceId);
    const old = await instance(world.seeded.oldInstanceId);
    expect(old?.State?.Name).toMatch(/stopping|stopped/);
    expect(tag(old, 'understudy:role')).toBe('retired');
    expect(Date.parse(tag(old, 'understudy:retire-after') ?? '')).toBeGreaterThan(Date.now());
    expect(outcomeMessages(world)).toHaveLength(1);
  });

  it('rolls back before the switch when cloud-init fails, and the EIP never moves', async () => {
    world = await startWorld({ newImage: { cloudInit: 'error', app: 'broken' } });
    const run = await world.run();

    expect(run.status).toBe('FAILED');
    expect(run.outcome).toBe('rolled-back');
    // Through the agent's event and the signal function, not by waiting out the readiness timeout.
    expect(errorInto(run, 'Rollback')).toBe('ReadinessFailed');
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress')).toHaveLength(0);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
    const [candidate] = await instancesTagged('understudy:role', 'failed');
    expect(candidate?.State?.Name).toMatch(/stopping|stopped/);
    expect(outcomeMessages(world)).toHaveLength(1);
  });

  it('rolls back when the readiness agent never reports before the timeout', async () => {
    world = await startWorld({
      newImage: { cloudInit: 'hang', app: 'healthy' },
      target: (t) => ({ ...t, readiness: { ...t.readiness, timeoutSeconds: 300, heartbeatSeconds: 120 } }),
    });
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
    expect(run.timeline.some((e) => e.state === 'Rollback')).toBe(true);
    expect(errorInto(run, 'Rollback')).toBe('States.Timeout');
  });

  it('answers TaskTimedOut to a readiness callback that comes after the task timed out', async () => {
    world = await startWorld({
      newImage: { cloudInit: 'hang', app: 'healthy' },
      target: (t) => ({ ...t, readiness: { ...t.readiness, timeoutSeconds: 300, heartbeatSeconds: 120 } }),
    });
    const run = await world.run();
    const stored = world.sandbox.calls.find(
      (c) => c.action === 'PutParameter' && JSON.stringify(c.input).includes('/tokens/'),
    );
    const token = /sandbox-token-[0-9a-f-]+/.exec(JSON.stringify(stored?.input))?.[0] ?? '';

    const late = await clients()
      .sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' }))
      .then(
        () => 'accepted',
        (error: Error) => error.name,
      );

    expect(errorInto(run, 'Rollback')).toBe('States.Timeout');
    expect(late).toBe('TaskTimedOut');
  });

  it('fails the readiness task HeartbeatSeconds after it started when the agent never reports', async () => {
    world = await startWorld({
      newImage: { cloudInit: 'done', app: 'healthy', agent: false },
      target: (t) => ({ ...t, readiness: { ...t.readiness, timeoutSeconds: 600, heartbeatSeconds: 120 } }),
    });
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    expect(errorInto(run, 'Rollback')).toBe('States.HeartbeatTimeout');
    expect(run.timeline.find((e) => e.state === 'AwaitReadiness')?.durationMs).toBe(120_000);
  });

  it('fails a step with Sandbox.Timedout when its function outlives its own timeout (lib/steps.ts)', async () => {
    world = await startWorld({
      // The switch function is given 60 s; its Task would wait 120 s.
      wrap: (handlers: HandlerSet) => ({ ...handlers, switch: () => new Promise<never>(() => {}) }),
    });
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    expect(errorInto(run, 'Rollback')).toBe('Sandbox.Timedout');
    expect(run.timeline.find((e) => e.state === 'Switch')?.durationMs).toBe(60_000);
  });

  it('fails loudly when the signal function throws on every agent event, however the run ended', async () => {
    world = await startWorld({
      newImage: { cloudInit: 'error', app: 'broken' },
      // Long enough for Lambda's two retries of the asynchronous invocation (1 and 2 minutes later).
      target: (t) => ({ ...t, readiness: { ...t.readiness, timeoutSeconds: 600, heartbeatSeconds: 400 } }),
      wrap: (handlers: HandlerSet) => ({
        ...handlers,
        signal: async () => {
          throw new Error('the signal function is broken');
        },
      }),
    });
    const run = await world.run();
    const current = world;
    world = undefined;

    expect(run.outcome).toBe('rolled-back');
    await expect(current.stop()).rejects.toBeInstanceOf(AggregateError);
  });

  it('puts the EIP back on the old box when the new app fails during the bake period', async () => {
    world = await startWorld({ newImage: { cloudInit: 'done', app: { healthyForMs: 40_000 } } });
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress').length).toBeGreaterThanOrEqual(2);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
    const [candidate] = await instancesTagged('understudy:role', 'failed');
    expect(candidate?.State?.Name).toMatch(/stopping|stopped/);
    const old = await instance(world.seeded.oldInstanceId);
    expect(old?.State?.Name).toBe('running');
  });

  it('launches one instance even when the launch task is retried after its effect', async () => {
    let crashed = false;
    world = await startWorld({
      wrap: (handlers: HandlerSet) => ({
        ...handlers,
        launch: async (event, context) => {
          const result = await (handlers.launch as NonNullable<HandlerSet['launch']>)(event, context);
          if (!crashed) {
            crashed = true;
            const error = new Error('the function died after RunInstances returned');
            error.name = 'Lambda.ServiceException';
            throw error;
          }
          return result;
        },
      }),
    });
    const run = await world.run();

    expect(crashed).toBe(true);
    expect(run.outcome).toBe('replaced');
    const launched = await instancesTagged('understudy:execution', run.executionArn.split(':').pop() ?? '');
    expect(launched).toHaveLength(1);
  });

  it('refuses a second execution on the same target while the first holds the lock', async () => {
    world = await startWorld();
    const current = world;
    let second: Promise<Awaited<ReturnType<World['run']>>> | undefined;
    const first = current.run(
      { target: 'web' },
      {
        name: 'first',
        onStateEntered: (state) => {
          if (state === 'AwaitReadiness' && !second)
            second = current.run({ target: 'web' }, { name: 'second' });
        },
      },
    );
    const firstRun = await first;
    const secondRun = await (second as NonNullable<typeof second>);

    expect(firstRun.outcome).toBe('replaced');
    expect(secondRun.status).toBe('FAILED');
    expect(secondRun.outcome).toBe('failed');
    expect(secondRun.cause).toContain('first');
    expect(outcomeMessages(current)).toHaveLength(2);
  });

  it('refuses bad input before any call that changes the account', async () => {
    world = await startWorld();
    const run = await world.run({ target: 'web', imageId: 'not-an-ami', colour: 'blue' });

    expect(run.status).toBe('FAILED');
    expect(run.outcome).toBe('failed');
    expect(run.cause).toMatch(/imageId/);
    expect(world.mutatingCalls((c) => c.service === 'ec2' || c.service === 'ssm')).toEqual([]);
    expect(
      world.mutatingCalls((c) => c.service === 's3').every((c) => JSON.stringify(c.input).includes('runs/')),
    ).toBe(true);
  });

  it('changes nothing on a dry run and reports the plan', async () => {
    world = await startWorld();
    const run = await world.run({ target: 'web', dryRun: true });

    expect(run.status).toBe('SUCCEEDED');
    expect(world.mutatingCalls((c) => c.service === 'ec2' || c.service === 'ssm')).toEqual([]);
    expect(
      world.mutatingCalls((c) => c.service === 's3' && JSON.stringify(c.input).includes('locks/')),
    ).toEqual([]);
    expect((run.outputs.Preflight as { run?: { action?: string } }).run?.action).toBe('dry-run');
  });

  it('uses a readiness event that arrived before the task token was stored', async () => {
    // A slow cold start of the await-readiness function lets the agent's event (boot of 0.5 s) win the race.
    world = await startWorld({
      newImage: { cloudInit: 'done', app: 'healthy', bootMs: 500 },
      wrap: (handlers: HandlerSet) => ({
        ...handlers,
        'await-readiness': async (event, context) => {
          await new Promise((resolve) => setTimeout(resolve, 5_000));
          return (handlers['await-readiness'] as NonNullable<HandlerSet['launch']>)(event, context);
        },
      }),
    });
    const run = await world.run();
    expect(run.error ?? 'none').toBe('none');

    expect(run.outcome).toBe('replaced');
    const signalled = world.sandbox.calls.findIndex(
      (c) => c.action === 'PutParameter' && JSON.stringify(c.input).includes('/events/'),
    );
    const tokenStored = world.sandbox.calls.findIndex(
      (c) => c.action === 'PutParameter' && JSON.stringify(c.input).includes('/tokens/'),
    );
    expect(signalled).toBeGreaterThanOrEqual(0);
    expect(tokenStored).toBeGreaterThan(signalled);
  });

  it('finishes as a no-op when the box already runs the requested image', async () => {
    world = await startWorld();
    const run = await world.run({ target: 'web', imageId: world.seeded.oldImageId });

    expect(run.status).toBe('SUCCEEDED');
    expect(run.outcome).toBe('no-op');
    expect(world.mutatingCalls((c) => c.service === 'ec2')).toEqual([]);
  });

  it('launches with a public IP when the subnet has no route out but an internet gateway', async () => {
    world = await startWorld({ seed: { egress: 'igw' } });
    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    const [launch] = world.mutatingCalls((c) => c.action === 'RunInstances');
    const input = launch?.input as {
      NetworkInterfaces?: { AssociatePublicIpAddress?: boolean }[];
      SubnetId?: string;
    };
    expect(input.NetworkInterfaces?.[0]?.AssociatePublicIpAddress).toBe(true);
    expect(input.SubnetId).toBeUndefined();
  });
});
