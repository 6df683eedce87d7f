import { DescribeInstancesCommand, type Instance } from '@aws-sdk/client-ec2';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { clients } from '../../lambdas/shared/clients';
import { parseResourceAddress } from '../../lambdas/shared/tfstate/address';
import { findInstance } from '../../lambdas/shared/tfstate/lookup';
import { readState } from '../../lambdas/shared/tfstate/state';
import { terminateRetiredStatement } from '../../lib/retirement';
import type { Sandbox } from '../../sandbox/aws/sandbox';
import type { ImageBehaviour } from '../../sandbox/contracts';
import { SANDBOX_ENV } from '../../sandbox/demo';
import { DEMO_TERRAFORM } from '../../sandbox/terraform';
import { evaluate, type PolicyStatement } from '../security/iam-eval';
import { outcomeMessages, startWorld, type World } from './helpers';

const HOUR = 3_600_000;

const instance = async (id: string): Promise<Instance | undefined> => {
  const out = await clients().ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
  return out.Reservations?.[0]?.Instances?.[0];
};
const tag = (i: Instance | undefined, key: string) => i?.Tags?.find((t) => t.Key === key)?.Value;
const stateNames = async (): Promise<unknown> => {
  const out = await clients().s3.send(
    new GetObjectCommand({ Bucket: DEMO_TERRAFORM.bucket, Key: DEMO_TERRAFORM.key }),
  );
  const text = (await out.Body?.transformToString()) ?? '';
  return findInstance(readState(text), parseResourceAddress(DEMO_TERRAFORM.instanceAddress))?.instance
    .attributes?.id;
};
const modelOf = (world: World) => world.sandbox as unknown as Sandbox;

/** The stack's retirement role, as IAM would evaluate it for the schedule's TerminateInstances. */
const registerRetirementRole = (world: World) => {
  const statement = terminateRetiredStatement(
    { partition: 'aws', region: world.sandbox.region, account: world.sandbox.accountId },
    ['web'],
  ) as PolicyStatement;
  modelOf(world).scheduler.registerRole(
    SANDBOX_ENV.SCHEDULER_ROLE_ARN,
    (request) => evaluate([statement], request).allowed,
  );
};

/** A replacement, so that the seeded box is retired with a window; returns the new box. */
const replaceOnce = async (world: World, name: string, imageId?: string): Promise<string> => {
  const run = await world.run({ target: 'web', ...(imageId ? { imageId } : {}) }, { name });
  expect(run.outcome).toBe('replaced');
  const serving = world.sandbox.eipInstance(world.seeded.allocationId) as string;
  expect(serving).not.toBe(world.seeded.oldInstanceId);
  return serving;
};

describe('the rollback window on the sandbox account', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('schedules the end of the window: a one-time at() schedule that terminates the old box as the retirement role', async () => {
    world = await startWorld({ target: (t) => ({ ...t, rollback: { ...t.rollback, windowHours: 6 } }) });
    const before = Date.now();
    await replaceOnce(world, 'replace-1');
    const old = world.seeded.oldInstanceId;
    const schedule = modelOf(world).scheduler.schedules.get(`${SANDBOX_ENV.SCHEDULE_GROUP}/web-${old}`);

    expect(schedule?.target).toEqual({
      arn: 'arn:aws:scheduler:::aws-sdk:ec2:terminateInstances',
      roleArn: SANDBOX_ENV.SCHEDULER_ROLE_ARN,
      input: JSON.stringify({ InstanceIds: [old] }),
    });
    expect(schedule?.actionAfterCompletion).toBe('DELETE');
    const retireAfter = tag(await instance(old), 'understudy:retire-after') as string;
    expect(schedule?.expression).toBe(`at(${retireAfter.slice(0, 19)})`);
    expect(Date.parse(retireAfter) - before).toBeGreaterThanOrEqual(6 * HOUR - 1000);
    const record = JSON.parse(
      (await (
        await clients().s3.send(
          new GetObjectCommand({ Bucket: SANDBOX_ENV.RUNS_BUCKET, Key: 'runs/web/replace-1.json' }),
        )
      ).Body?.transformToString()) ?? '{}',
    ) as { retire?: { retireAfter?: string; schedule?: { name?: string } } };
    expect(record.retire?.retireAfter).toBe(retireAfter);
    expect(record.retire?.schedule?.name).toBe(`web-${old}`);
  });

  it('terminates the retired box when its window ends, through the scheduler role', async () => {
    world = await startWorld({ target: (t) => ({ ...t, rollback: { ...t.rollback, windowHours: 1 } }) });
    registerRetirementRole(world);
    await replaceOnce(world, 'replace-1');
    await world.sandbox.clock.sleep(HOUR + 60_000);

    const old = await instance(world.seeded.oldInstanceId);
    expect(old?.State?.Name).toMatch(/shutting-down|terminated/);
    expect(modelOf(world).scheduler.invocations).toEqual([
      expect.objectContaining({ action: 'TerminateInstances', input: { InstanceIds: [old?.InstanceId] } }),
    ]);
    expect(modelOf(world).scheduler.invocations[0]?.error).toBeUndefined();
    expect(modelOf(world).scheduler.schedules.size).toBe(0);
  });

  it('protects a box that serves again: the role may not terminate it even if its schedule fires', async () => {
    world = await startWorld({ target: (t) => ({ ...t, rollback: { ...t.rollback, windowHours: 1 } }) });
    registerRetirementRole(world);
    await replaceOnce(world, 'replace-1');
    const old = world.seeded.oldInstanceId;
    // As if a rollback relabelled the box but its schedule had been left behind.
    modelOf(world).ec2.instances.get(old)?.tags.set('understudy:role', 'serving');
    await world.sandbox.clock.sleep(HOUR + 60_000);

    expect((await instance(old))?.State?.Name).toMatch(/stopping|stopped/);
    expect(modelOf(world).scheduler.invocations.map((i) => i.error)).toEqual(['AccessDenied']);
  });

  it('rolls back within the window: EIP back on the old box, healthy, the state names it again, the newer box retired', async () => {
    world = await startWorld();
    registerRetirementRole(world);
    const newer = await replaceOnce(world, 'replace-1');
    const old = world.seeded.oldInstanceId;
    expect(await stateNames()).toBe(newer);

    const run = await world.run({ target: 'web', action: 'rollback' }, { name: 'rollback-1' });

    expect(run.status).toBe('SUCCEEDED');
    expect(run.outcome).toBe('rolled-back-by-request');
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(old);
    const restored = await instance(old);
    expect(restored?.State?.Name).toBe('running');
    expect(tag(restored, 'understudy:role')).toBe('serving');
    expect(await stateNames()).toBe(old);
    const retired = await instance(newer);
    expect(retired?.State?.Name).toMatch(/stopping|stopped/);
    expect(tag(retired, 'understudy:role')).toBe('retired');
    // The restored box's schedule is gone, the newer box has its own.
    const schedules = [...modelOf(world).scheduler.schedules.values()].map((s) => s.name);
    expect(schedules).toEqual([`web-${newer}`]);
    // Waited for the box itself (status checks, SSM), never for a readiness agent event.
    expect(run.inputs.AwaitRestoreCheck).toBeDefined();
    expect(outcomeMessages(world).map((m) => m.attributes.event)).toEqual([
      'replaced',
      'rolled-back-by-request',
    ]);
  });

  it("dates every step of both runs' timelines: the launch and readiness, then the retired box's start and return", async () => {
    world = await startWorld();
    registerRetirementRole(world);
    await replaceOnce(world, 'replace-1');
    const old = world.seeded.oldInstanceId;
    await world.run({ target: 'web', action: 'rollback' }, { name: 'rollback-1' });

    const [replacement, rollback] = outcomeMessages(world).map((m) => m.message);
    const dated = /^ {2}\d\d:\d\d:\d\d \+\S+/;
    const line = (message: string | undefined, what: RegExp) =>
      message?.split('\n').find((l) => what.test(l));
    expect(line(replacement, /launched i-/)).toMatch(dated);
    expect(line(replacement, /readiness: done/)).toMatch(dated);
    expect(line(rollback, new RegExp(`started the retired ${old}`))).toMatch(dated);
    expect(line(rollback, new RegExp(`${old} is up: status checks passed`))).toMatch(dated);
  });

  it('puts the Elastic IP back on the newer box when the restored one fails after the switch, and lets the old box sleep again', async () => {
    world = await startWorld();
    registerRetirementRole(world);
    const newer = await replaceOnce(world, 'replace-1');
    const old = world.seeded.oldInstanceId;
    // The old box comes back with an app that breaks shortly after it passed its local check.
    const image = modelOf(world).ec2.image(world.seeded.oldImageId) as { behaviour: ImageBehaviour };
    image.behaviour = { cloudInit: 'done', app: { healthyForMs: 45_000 } };
    const retireAfter = tag(await instance(old), 'understudy:retire-after');

    const run = await world.run({ target: 'web', action: 'rollback' }, { name: 'rollback-broken' });

    expect(run.status).toBe('FAILED');
    expect(run.outcome).toBe('failed');
    expect(run.inputs.RestoreSwitch).toBeDefined();
    expect(run.inputs.RevertRestore).toBeDefined();
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(newer);
    expect(await stateNames()).toBe(newer);
    const sleeping = await instance(old);
    expect(sleeping?.State?.Name).toMatch(/stopping|stopped/);
    expect(tag(sleeping, 'understudy:role')).toBe('retired');
    expect(tag(sleeping, 'understudy:retire-after')).toBe(retireAfter);
    const schedules = [...modelOf(world).scheduler.schedules.values()].map((s) => s.name);
    expect(schedules).toEqual([`web-${old}`]);
    expect(outcomeMessages(world).at(-1)?.message).toContain(`the Elastic IP stays on ${newer}`);
  });

  it('refuses a rollback once the window has ended, with the reason, and changes nothing', async () => {
    world = await startWorld({ target: (t) => ({ ...t, rollback: { ...t.rollback, windowHours: 1 } }) });
    await replaceOnce(world, 'replace-1');
    // No role registered: the schedule cannot terminate the box, so only the window's end is in the way.
    await world.sandbox.clock.sleep(HOUR + 60_000);
    const calls = world.sandbox.calls.length;

    const run = await world.run({ target: 'web', action: 'rollback' }, { name: 'rollback-late' });

    expect(run.status).toBe('FAILED');
    expect(run.outcome).toBe('failed');
    const message = outcomeMessages(world).at(-1)?.message ?? '';
    expect(message).toContain('rollback window');
    expect(message).toContain('ended at');
    const mutating = world.sandbox.calls
      .slice(calls)
      .filter((c) => c.mutating && c.service !== 'sns' && !(c.service === 's3' && c.action === 'PutObject'));
    expect(mutating).toEqual([]);
  });

  it('refuses a rollback when the retired box was already terminated', async () => {
    world = await startWorld();
    await replaceOnce(world, 'replace-1');
    await modelOf(world).ec2.actions.TerminateInstances({ InstanceIds: [world.seeded.oldInstanceId] });
    const calls = world.sandbox.calls.length;

    const run = await world.run({ target: 'web', action: 'rollback' }, { name: 'rollback-gone' });

    expect(run.outcome).toBe('failed');
    expect(outcomeMessages(world).at(-1)?.message).toMatch(/is (shutting-down|terminated)/);
    const mutating = world.sandbox.calls
      .slice(calls)
      .filter((c) => c.mutating && c.service !== 'sns' && !(c.service === 's3' && c.action === 'PutObject'));
    expect(mutating).toEqual([]);
  });

  it('shows the plan on a dry run: the retired box, its window, the box serving now', async () => {
    world = await startWorld();
    const newer = await replaceOnce(world, 'replace-1');
    const run = await world.run(
      { target: 'web', action: 'rollback', dryRun: true },
      { name: 'rollback-plan' },
    );

    expect(run.outcome).toBe('dry-run');
    const plan = (run.inputs.Finish as { run?: Record<string, unknown> } | undefined)?.run as {
      old: { instanceId: string };
      restore: { instanceId: string; retireAfter: string };
    };
    expect(plan.old.instanceId).toBe(newer);
    expect(plan.restore.instanceId).toBe(world.seeded.oldInstanceId);
    expect(Date.parse(plan.restore.retireAfter)).toBeGreaterThan(Date.now());
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(newer);
  });

  it('terminates the previously retired box when a second replacement succeeds, and deletes its schedule', async () => {
    world = await startWorld();
    const first = await replaceOnce(world, 'replace-1');
    const image = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' }, { name: 'second' });
    const second = await replaceOnce(world, 'replace-2', image);

    expect(second).not.toBe(first);
    expect((await instance(world.seeded.oldInstanceId))?.State?.Name).toMatch(/shutting-down|terminated/);
    expect(tag(await instance(first), 'understudy:role')).toBe('retired');
    const schedules = [...modelOf(world).scheduler.schedules.values()].map((s) => s.name);
    expect(schedules).toEqual([`web-${first}`]);
  });
});
