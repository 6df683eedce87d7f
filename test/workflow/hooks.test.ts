import type { TargetConfig } from '../../lambdas/shared/config';
import { startWorld, type World } from './helpers';
import { logOf, withHooks } from './hook-fixtures';

/**
 * Hook lines run through SSM Run Command in the box's own directory (the sandbox runs each script in a
 * per-instance root), so a line that appends to a relative file leaves a trace on the box it ran on.
 */
const HOOKS: NonNullable<TargetConfig['hooks']> = {
  beforeSwitch: { newBox: ['echo warm-caches >> hooks.log'] },
  afterSwitch: {
    oldBox: ['echo stop-workers >> hooks.log'],
    newBox: ['echo start-workers >> hooks.log', 'echo second-line >> hooks.log'],
  },
};

/** Sequence numbers of the successful calls in the account, to order them across services. */
const seqOf = (world: World, predicate: (action: string, input: Record<string, unknown>) => boolean) =>
  world.sandbox.calls
    .filter((c) => !c.error && predicate(c.action, (c.input ?? {}) as Record<string, unknown>))
    .map((c) => c.seq);
const hookSends = (world: World, purpose: string) =>
  seqOf(world, (action, input) => action === 'SendCommand' && String(input.Comment).endsWith(`:${purpose}`));

describe('lifecycle hooks on the sandbox account', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('runs beforeSwitch on the new box before the switch, then afterSwitch on the old box and then on the new box', async () => {
    world = await startWorld({ target: withHooks(HOOKS) });
    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    const newBox = world.sandbox.eipInstance(world.seeded.allocationId) ?? '';
    expect(newBox).not.toBe(world.seeded.oldInstanceId);
    expect(logOf(world, newBox)).toEqual(['warm-caches', 'start-workers', 'second-line']);
    expect(logOf(world, world.seeded.oldInstanceId)).toEqual(['stop-workers']);

    const [before] = hookSends(world, 'hook-before-new');
    const [afterOld] = hookSends(world, 'hook-after-old');
    const [afterNew] = hookSends(world, 'hook-after-new');
    const [associate] = seqOf(world, (action) => action === 'AssociateAddress');
    expect([before, associate, afterOld, afterNew].every((s) => s !== undefined)).toBe(true);
    expect(before as number).toBeLessThan(associate as number);
    expect(associate as number).toBeLessThan(afterOld as number);
    expect(afterOld as number).toBeLessThan(afterNew as number);
    // The after-switch hooks wait for the probe and the bake to pass, then precede the reconcile.
    const order = run.timeline.map((e) => e.state);
    expect(order.indexOf('HookAfterSwitchOld')).toBeGreaterThan(order.lastIndexOf('Probe'));
    expect(order.indexOf('HookAfterSwitchNew')).toBeLessThan(order.indexOf('Reconcile'));
  });

  it('skips every hook state for a target without hooks', async () => {
    world = await startWorld();
    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    const states = new Set(run.timeline.map((e) => e.state));
    for (const state of [
      'HookBeforeSwitchNew',
      'HookAfterSwitchOld',
      'HookAfterSwitchNew',
      'AwaitApproval',
    ]) {
      expect(states.has(state)).toBe(false);
    }
  });

  it('rolls back with the EIP never moved when a beforeSwitch hook fails, and runs no afterSwitch hook', async () => {
    world = await startWorld({
      target: withHooks({ ...HOOKS, beforeSwitch: { newBox: ['echo warming >> hooks.log', 'exit 7'] } }),
    });
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    const rollbackInput = run.inputs.Rollback as { error?: { Error?: string; Cause?: string } };
    expect(rollbackInput.error?.Error).toBe('CommandFailed');
    expect(rollbackInput.error?.Cause).toMatch(/beforeSwitch hook on the new box failed/);
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress')).toHaveLength(0);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
    expect(hookSends(world, 'hook-after-old')).toEqual([]);
    expect(logOf(world, world.seeded.oldInstanceId)).toEqual([]);
  });

  it('rolls back like a failed probe when an afterSwitch hook fails: the EIP returns to the old box', async () => {
    world = await startWorld({
      target: withHooks({ afterSwitch: { oldBox: ['echo stop-workers >> hooks.log'], newBox: ['false'] } }),
    });
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    const rollbackInput = run.inputs.Rollback as { error?: { Error?: string; Cause?: string } };
    expect(rollbackInput.error?.Error).toBe('CommandFailed');
    expect(rollbackInput.error?.Cause).toMatch(/afterSwitch hook on the new box failed/);
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress').length).toBeGreaterThanOrEqual(2);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
    // What already ran is not undone: the operator's lines on the old box ran once.
    expect(logOf(world, world.seeded.oldInstanceId)).toEqual(['stop-workers']);
  });
});
