import type { TargetConfig } from '../../lambdas/shared/config';
import { outcomeMessages, startWorld, type World } from './helpers';
import { logOf, withHooks } from './hook-fixtures';

/**
 * A rollback by request moves singleton work like a replacement does: beforeSwitch runs on the box about
 * to take traffic (the restored one), afterSwitch.oldBox on the box losing it (the newer one) and
 * afterSwitch.newBox on the restored box once its probe passed. Each hook line appends to a file in the
 * box's own directory (the sandbox's per-instance root), so the file tells which box ran what.
 */
const HOOKS: NonNullable<TargetConfig['hooks']> = {
  beforeSwitch: { newBox: ['echo warm-caches >> hooks.log'] },
  afterSwitch: {
    oldBox: ['echo stop-workers >> hooks.log'],
    newBox: ['echo start-workers >> hooks.log'],
  },
};

/** Successful calls made from `from` on (a sequence number), to order them across services. */
const callsSince = (world: World, from: number) =>
  world.sandbox.calls.filter((c) => !c.error && c.seq >= from);
const hookSendsSince = (world: World, from: number, purpose: string) =>
  callsSince(world, from)
    .filter((c) => {
      const input = (c.input ?? {}) as { Comment?: unknown };
      return c.action === 'SendCommand' && String(input.Comment).endsWith(`:${purpose}`);
    })
    .map((c) => ({ seq: c.seq, instanceIds: (c.input as { InstanceIds?: string[] }).InstanceIds }));
const nextSeq = (world: World) => (world.sandbox.calls.at(-1)?.seq ?? 0) + 1;

/** A replacement, so that the seeded box is retired with a window; returns the newer box. */
const replaceOnce = async (world: World): Promise<string> => {
  const run = await world.run({ target: 'web' }, { name: 'replace-1' });
  expect(run.outcome).toBe('replaced');
  const serving = world.sandbox.eipInstance(world.seeded.allocationId) as string;
  expect(serving).not.toBe(world.seeded.oldInstanceId);
  return serving;
};

const rollback = (world: World, name: string) => world.run({ target: 'web', action: 'rollback' }, { name });

describe('lifecycle hooks during a rollback by request, on the sandbox account', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('runs beforeSwitch on the restored box before the switch, then afterSwitch on the newer box and then on the restored box', async () => {
    world = await startWorld({ target: withHooks(HOOKS) });
    const newer = await replaceOnce(world);
    const restored = world.seeded.oldInstanceId;
    const from = nextSeq(world);

    const run = await rollback(world, 'rollback-1');

    expect(run.outcome).toBe('rolled-back-by-request');
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(restored);
    // The replacement's hooks first, then the rollback's, in the roles the boxes have in each run.
    expect(logOf(world, restored)).toEqual(['stop-workers', 'warm-caches', 'start-workers']);
    expect(logOf(world, newer)).toEqual(['warm-caches', 'start-workers', 'stop-workers']);

    const [before] = hookSendsSince(world, from, 'hook-before-new');
    const [afterOld] = hookSendsSince(world, from, 'hook-after-old');
    const [afterNew] = hookSendsSince(world, from, 'hook-after-new');
    expect(before?.instanceIds).toEqual([restored]);
    expect(afterOld?.instanceIds).toEqual([newer]);
    expect(afterNew?.instanceIds).toEqual([restored]);
    const associate = callsSince(world, from).find((c) => c.action === 'AssociateAddress')?.seq;
    const stopNewer = callsSince(world, from).find(
      (c) =>
        c.action === 'StopInstances' && (c.input as { InstanceIds?: string[] }).InstanceIds?.includes(newer),
    )?.seq;
    expect(before?.seq).toBeLessThan(associate as number);
    expect(associate).toBeLessThan(afterOld?.seq as number);
    expect(afterOld?.seq).toBeLessThan(afterNew?.seq as number);
    expect(afterNew?.seq).toBeLessThan(stopNewer as number);
    // The after-switch hooks wait for the restored box's probe and bake, and precede the reconcile.
    const order = run.timeline.map((e) => e.state);
    expect(order.indexOf('HookRestoreAfterSwitchOld')).toBeGreaterThan(order.lastIndexOf('RestoreProbe'));
    expect(order.indexOf('AwaitHookRestoreAfterSwitchNew')).toBeLessThan(order.indexOf('RestoreReconcile'));
  });

  it('skips every rollback hook state for a target without hooks', async () => {
    world = await startWorld();
    await replaceOnce(world);

    const run = await rollback(world, 'rollback-1');

    expect(run.outcome).toBe('rolled-back-by-request');
    const states = new Set(run.timeline.map((e) => e.state));
    for (const state of [
      'HookRestoreBeforeSwitch',
      'HookRestoreAfterSwitchOld',
      'HookRestoreAfterSwitchNew',
    ]) {
      expect(states.has(state)).toBe(false);
    }
  });

  it('leaves the Elastic IP on the newer box when the beforeSwitch hook fails on the restored box, and says why', async () => {
    // The replacement's afterSwitch leaves a marker on the box it retires; the beforeSwitch hook refuses to
    // prepare a box carrying it, so it passes on the fresh candidate and fails on the restored box.
    world = await startWorld({
      target: withHooks({
        beforeSwitch: { newBox: ['test ! -e workers-disabled', 'echo warm-caches >> hooks.log'] },
        afterSwitch: { oldBox: ['touch workers-disabled'], newBox: ['echo start-workers >> hooks.log'] },
      }),
    });
    const newer = await replaceOnce(world);
    const restored = world.seeded.oldInstanceId;
    const from = nextSeq(world);

    const run = await rollback(world, 'rollback-refused-by-hook');

    expect(run.status).toBe('FAILED');
    expect(run.outcome).toBe('failed');
    const revertInput = run.inputs.RevertRestore as { error?: { Error?: string; Cause?: string } };
    expect(revertInput.error?.Error).toBe('CommandFailed');
    expect(revertInput.error?.Cause).toMatch(/beforeSwitch hook on the restored box failed/);
    // Nothing moved: no AssociateAddress in the rollback, no afterSwitch hook on either box.
    expect(callsSince(world, from).filter((c) => c.action === 'AssociateAddress')).toEqual([]);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(newer);
    expect(hookSendsSince(world, from, 'hook-after-old')).toEqual([]);
    expect(hookSendsSince(world, from, 'hook-after-new')).toEqual([]);
    expect(logOf(world, restored)).toEqual([]);
    const message = outcomeMessages(world).at(-1)?.message ?? '';
    expect(message).toContain('beforeSwitch hook on the restored box failed');
    expect(message).toContain(`the Elastic IP stays on ${newer}`);
  });

  it('puts the Elastic IP back on the newer box, healthy, when an afterSwitch hook fails after the switch', async () => {
    world = await startWorld({
      target: withHooks({
        afterSwitch: {
          oldBox: ['echo stop-workers >> hooks.log'],
          // Passes on the fresh candidate, fails on the box that had been retired (it has a hooks.log).
          newBox: ['test ! -e hooks.log', 'echo start-workers >> hooks.log'],
        },
      }),
    });
    const newer = await replaceOnce(world);
    const restored = world.seeded.oldInstanceId;
    const from = nextSeq(world);

    const run = await rollback(world, 'rollback-hook-after');

    expect(run.outcome).toBe('failed');
    const revertInput = run.inputs.RevertRestore as { error?: { Error?: string; Cause?: string } };
    expect(revertInput.error?.Cause).toMatch(/afterSwitch hook on the restored box failed/);
    expect(callsSince(world, from).filter((c) => c.action === 'AssociateAddress').length).toBe(2);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(newer);
    const revert = run.inputs.Finish as { rollback?: { outcome?: string; serviceHealthy?: boolean } };
    expect(revert.rollback).toMatchObject({ outcome: 'rolled-back', serviceHealthy: true });
    // What already ran is not undone: the newer box's oldBox lines ran once in the rollback.
    expect(logOf(world, newer)).toEqual(['start-workers', 'stop-workers']);
    expect(logOf(world, restored)).toEqual(['stop-workers']);
  });
});
