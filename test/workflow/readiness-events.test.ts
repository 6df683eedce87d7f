import { GetParameterCommand } from '@aws-sdk/client-ssm';
import { clients } from '../../lambdas/shared/clients';
import { parameterNames } from '../../lambdas/shared/constants';
import { SANDBOX_ENV } from '../../sandbox/demo';
import type { HandlerSet, LambdaHandler, WorkflowRun } from '../../sandbox/workflow';
import { captureBefore, violations } from '../faults/invariants';
import { outcomeMessages } from './helpers';
import { type Invoked, type RecordingWorld, startRecordingWorld } from './recording';

/**
 * Issue 5, readiness events: EventBridge delivers at least once and in no promised order, so the box's
 * final event may come twice, before the task token is stored, or after the wait gave up. Each must
 * change nothing beyond what one timely event does. The events are the ones the sandbox's boxes put
 * on the bus, held back or repeated here, never written by hand.
 */

const detailTypeOf = (event: unknown) => (event as { 'detail-type'?: string } | null)?.['detail-type'];
const isFinal = (event: unknown) => /^Instance (Ready|Failed)$/.test(detailTypeOf(event) ?? '');
const actionOf = (result: unknown) => (result as { action?: string } | null)?.action;

/** The candidate's token and early-event parameters that still exist: neither may outlive the run. */
const parametersLeft = async (run: WorkflowRun) => {
  const candidate = (run.outputs.Launch as { launch?: { instanceId?: string } } | undefined)?.launch
    ?.instanceId;
  if (!candidate) throw new Error('the run launched no candidate');
  const names = parameterNames(SANDBOX_ENV.PARAMETER_PREFIX);
  const left: string[] = [];
  for (const name of [names.token(candidate), names.earlyEvent(candidate)]) {
    const found = await clients()
      .ssm.send(new GetParameterCommand({ Name: name }))
      .then(
        () => true,
        () => false,
      );
    if (found) left.push(name);
  }
  return left;
};

const successes = (world: RecordingWorld) =>
  world.sandbox.calls.filter((c) => c.action === 'SendTaskSuccess' && !c.error);

const withSignal = (wrap: (signal: LambdaHandler) => LambdaHandler) => (handlers: HandlerSet) => ({
  ...handlers,
  signal: wrap(handlers.signal as LambdaHandler),
});

describe('readiness events delivered twice, early or late', () => {
  let world: RecordingWorld | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('completes the readiness task once when the final event is delivered twice at the same time', async () => {
    const results: unknown[] = [];
    world = await startRecordingWorld({
      wrap: withSignal((signal) => async (event, context) => {
        if (!isFinal(event)) return signal(event, context);
        const both = await Promise.all([signal(event, context), signal(event, context)]);
        results.push(...both);
        return both[0];
      }),
    });
    const before = await captureBefore(world);
    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    expect(results.map(actionOf).sort()).toEqual(['ignored', 'succeeded']);
    expect(successes(world)).toHaveLength(1);
    expect(await violations(world, run, before)).toEqual([]);
  });

  it('neither completes a task nor moves traffic when the final event is delivered again after the run ended', async () => {
    world = await startRecordingWorld();
    const before = await captureBefore(world);
    const run = await world.run();
    const ready = world.invocations.find((i) => i.step === 'signal' && isFinal(i.event));
    const eipBefore = world.sandbox.eipInstance(world.seeded.allocationId);
    const mark = world.sandbox.calls.length;

    const again = await world.invoke('signal', ready?.event);

    expect(run.outcome).toBe('replaced');
    expect(again.ok).toBe(true);
    // Its one write is to SSM: with the token gone, the event is kept as an early event for a task that
    // will never come, and nothing deletes it.
    expect(
      world.sandbox.calls.slice(mark).filter((c) => c.mutating && !c.error && c.service !== 'ssm'),
    ).toEqual([]);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(eipBefore);
    expect(outcomeMessages(world)).toHaveLength(1);
    expect(await violations(world, run, before)).toEqual([]);
  });

  it('rolls back on an Instance Failed event that arrived before the task token, twice, without waiting for the timeout', async () => {
    world = await startRecordingWorld({
      newImage: { cloudInit: 'error', app: 'broken', bootMs: 500 },
      wrap: (handlers: HandlerSet) => ({
        ...withSignal((signal) => async (event, context) => {
          if (!isFinal(event)) return signal(event, context);
          await signal(event, context);
          return signal(event, context);
        })(handlers),
        // A slow cold start of await-readiness lets both deliveries win the race for the token.
        'await-readiness': async (event, context) => {
          await new Promise((resolve) => setTimeout(resolve, 5_000));
          return (handlers['await-readiness'] as LambdaHandler)(event, context);
        },
      }),
    });
    const before = await captureBefore(world);
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    expect((run.inputs.Rollback as { error?: { Error?: string } }).error?.Error).toBe('ReadinessFailed');
    expect(world.sandbox.calls.filter((c) => c.action === 'SendTaskFailure' && !c.error)).toHaveLength(1);
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress')).toEqual([]);
    expect(run.timeline.find((e) => e.state === 'AwaitReadiness')?.durationMs).toBeLessThan(60_000);
    expect(await parametersLeft(run)).toEqual([]);
    expect(await violations(world, run, before)).toEqual([]);
  });

  it('neither resurrects the run nor moves traffic when the final event comes after the readiness wait gave up', async () => {
    let current: RecordingWorld | undefined;
    let held: unknown;
    const late: Promise<Invoked>[] = [];
    world = await startRecordingWorld({
      // EventBridge holds the Ready event back; progress events still arrive and keep the task alive.
      wrap: withSignal((signal) => async (event, context) => {
        if (!isFinal(event)) return signal(event, context);
        held = event;
        return { action: 'delayed by the bus' };
      }),
    });
    current = world;
    const before = await captureBefore(world);
    const run = await world.run(undefined, {
      onStateEntered: (state) => {
        if (state === 'Rollback' && held !== undefined && current) late.push(current.invoke('signal', held));
      },
    });
    late.push(world.invoke('signal', held));
    const answers = await Promise.all(late);

    expect(held).toBeDefined();
    expect(run.outcome).toBe('rolled-back');
    expect((run.inputs.Rollback as { error?: { Error?: string } }).error?.Error).toMatch(
      /^States\.(Heartbeat)?Timeout$/,
    );
    expect(answers).toHaveLength(2);
    expect(answers.every((a) => a.ok && actionOf(a.value) !== 'succeeded')).toBe(true);
    expect(successes(world)).toEqual([]);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress')).toEqual([]);
    expect(await violations(world, run, before)).toEqual([]);
  });
});
