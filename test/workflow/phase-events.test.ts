import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import type { Template } from 'aws-cdk-lib/assertions';
import { clients } from '../../lambdas/shared/clients';
import { PHASE_DETAIL_TYPES, PHASE_EVENT_SOURCE } from '../../lambdas/shared/notify';
import type { BusEvent } from '../../sandbox/aws/events';
import type { Sandbox } from '../../sandbox/aws/sandbox';
import type { ImageBehaviour } from '../../sandbox/contracts';
import { SANDBOX_ENV } from '../../sandbox/demo';
import { logicalId, synthesize } from '../lib/stack-fixture';
import { startWorld, type World } from './helpers';

/**
 * The phase events a run puts on the Understudy bus, seen by a subscriber the way an integration would
 * subscribe (a rule on `source: understudy`), and checked against every rule the stack itself puts on
 * that bus: none may match, or a run's own announcements would drive the stack (the agent rule, or the
 * replacement-request rule, which starts runs).
 */

const BUS = SANDBOX_ENV.EVENT_BUS_NAME;
const PHASE_TYPES: readonly string[] = Object.values(PHASE_DETAIL_TYPES);

let stackRules: { name: string; pattern: Record<string, unknown> }[];
beforeAll(() => {
  const { stack, template } = synthesize();
  stackRules = rulesOnBus(template, logicalId(stack.eventBus));
});

/** The event patterns of the rules the stack puts on its own bus, as deployed. */
const rulesOnBus = (template: Template, busId: string) =>
  Object.entries(template.findResources('AWS::Events::Rule'))
    .filter(([, rule]) => (rule.Properties.EventBusName as { Ref?: string } | undefined)?.Ref === busId)
    .map(([name, rule]) => ({ name, pattern: rule.Properties.EventPattern as Record<string, unknown> }));

interface Observed {
  readonly world: World;
  /** What an integration subscribed to `source: understudy` receives. */
  readonly phases: BusEvent[];
  /** Events any of the stack's own bus rules matched, by rule. */
  readonly stackHits: { rule: string; event: BusEvent }[];
}

const observe = async (options: Parameters<typeof startWorld>[0] = {}): Promise<Observed> => {
  const world = await startWorld(options);
  const phases: BusEvent[] = [];
  const stackHits: { rule: string; event: BusEvent }[] = [];
  world.sandbox.addRule(BUS, { source: [PHASE_EVENT_SOURCE] }, async (event) => {
    phases.push(event as BusEvent);
  });
  for (const rule of stackRules) {
    world.sandbox.addRule(BUS, rule.pattern, async (event) => {
      stackHits.push({ rule: rule.name, event: event as BusEvent });
    });
  }
  return { world, phases, stackHits };
};

let current: World | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

/** Rules deliver asynchronously: wait until the bus has handed over what was put. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

/** A run that replaced the box, its events forgotten: what a rollback within the window starts from. */
const replacedFirst = async () => {
  const seen = await observe();
  current = seen.world;
  await seen.world.run({ target: 'web' }, { name: 'replace-1' });
  const newer = seen.world.sandbox.eipInstance(seen.world.seeded.allocationId);
  await settle();
  seen.phases.length = 0;
  return { seen, newer };
};

describe('phase events on the Understudy bus', () => {
  it('announces a replacement as started, switched and finished, with the target, the execution and both boxes', async () => {
    const seen = await observe();
    current = seen.world;

    const run = await seen.world.run();
    await settle();

    expect(run.outcome).toBe('replaced');
    expect(seen.phases.map((e) => e['detail-type'])).toEqual([
      'Replacement Started',
      'Replacement Switched',
      'Replacement Finished',
    ]);
    const [started, switched, finished] = seen.phases.map((e) => e.detail as Record<string, unknown>);
    const old = seen.world.seeded.oldInstanceId;
    for (const detail of [started, switched, finished]) {
      expect(detail).toMatchObject({ target: 'web', execution: run.executionArn.split(':').at(-1) });
    }
    expect(started).toMatchObject({ phase: 'started', oldInstanceId: old, imageId: expect.any(String) });
    expect(switched).toMatchObject({
      phase: 'switched',
      oldInstanceId: old,
      newInstanceId: expect.any(String),
    });
    expect(finished).toMatchObject({
      phase: 'finished',
      outcome: 'replaced',
      succeeded: true,
      oldInstanceId: old,
      newInstanceId: switched?.newInstanceId,
    });
  });

  it('announces a rollback between the start and the finish', async () => {
    const seen = await observe({ newImage: { cloudInit: 'error', app: 'broken' } });
    current = seen.world;

    const run = await seen.world.run();
    await settle();

    expect(run.outcome).toBe('rolled-back');
    expect(seen.phases.map((e) => e['detail-type'])).toEqual([
      'Replacement Started',
      'Replacement Rolled Back',
      'Replacement Finished',
    ]);
    expect(seen.phases[1]?.detail).toMatchObject({
      phase: 'rolled-back',
      target: 'web',
      eipInstanceId: seen.world.seeded.oldInstanceId,
    });
    expect(seen.phases[2]?.detail).toMatchObject({ outcome: 'rolled-back', succeeded: false });
  });

  it('announces a rollback within the window like a replacement: started, switched and finished, marked action rollback', async () => {
    const { seen, newer } = await replacedFirst();

    const run = await seen.world.run({ target: 'web', action: 'rollback' }, { name: 'rollback-1' });
    await settle();

    expect(run.outcome).toBe('rolled-back-by-request');
    expect(seen.phases.map((e) => e['detail-type'])).toEqual([
      'Replacement Started',
      'Replacement Switched',
      'Replacement Finished',
    ]);
    const [started, switched, finished] = seen.phases.map((e) => e.detail as Record<string, unknown>);
    const old = seen.world.seeded.oldInstanceId;
    for (const detail of [started, switched, finished]) {
      expect(detail).toMatchObject({ target: 'web', execution: 'rollback-1' });
    }
    expect(started).toMatchObject({ action: 'rollback', oldInstanceId: newer, restoreInstanceId: old });
    expect(switched).toMatchObject({ oldInstanceId: newer, newInstanceId: old });
    expect(finished).toMatchObject({
      action: 'rollback',
      outcome: 'rolled-back-by-request',
      succeeded: true,
      newInstanceId: old,
    });
    expect(seen.stackHits.filter((h) => h.event.source === PHASE_EVENT_SOURCE)).toEqual([]);
  });

  it('announces a rollback within the window that had to be undone as rolled back, then finished', async () => {
    const { seen, newer } = await replacedFirst();
    // The old box comes back broken: its app fails shortly after its local check passed.
    const model = seen.world.sandbox as unknown as Sandbox;
    const image = model.ec2.image(seen.world.seeded.oldImageId) as { behaviour: ImageBehaviour };
    image.behaviour = { cloudInit: 'done', app: { healthyForMs: 45_000 } };

    const run = await seen.world.run({ target: 'web', action: 'rollback' }, { name: 'rollback-broken' });
    await settle();

    expect(run.outcome).toBe('failed');
    expect(seen.phases.map((e) => e['detail-type'])).toEqual([
      'Replacement Started',
      'Replacement Switched',
      'Replacement Rolled Back',
      'Replacement Finished',
    ]);
    expect(seen.phases[2]?.detail).toMatchObject({
      phase: 'rolled-back',
      action: 'rollback',
      execution: 'rollback-broken',
      eipInstanceId: newer,
    });
    expect(seen.phases[3]?.detail).toMatchObject({ action: 'rollback', outcome: 'failed', succeeded: false });
  });

  it('announces nothing for a dry run: no replacement started', async () => {
    const seen = await observe();
    current = seen.world;

    await seen.world.run({ target: 'web', dryRun: true });
    await settle();

    expect(seen.phases).toEqual([]);
  });

  it('matches none of the rules the stack puts on its bus, so no run drives the stack', async () => {
    const seen = await observe();
    current = seen.world;

    await seen.world.run();
    await settle();

    expect(seen.phases).toHaveLength(3);
    expect(seen.stackHits.filter((h) => PHASE_TYPES.includes(h.event['detail-type']))).toEqual([]);
    expect(seen.stackHits.filter((h) => h.event.source === PHASE_EVENT_SOURCE)).toEqual([]);
  });

  it("uses a check that would catch a loop: the stack's request rule does match a replacement request", async () => {
    const seen = await observe();
    current = seen.world;
    expect(stackRules.length).toBeGreaterThanOrEqual(2);

    await clients().events.send(
      new PutEventsCommand({
        Entries: [
          {
            EventBusName: BUS,
            Source: PHASE_EVENT_SOURCE,
            DetailType: 'Replacement Requested',
            Detail: JSON.stringify({ target: 'web', dryRun: true }),
          },
        ],
      }),
    );
    await settle();

    expect(seen.stackHits.map((h) => h.event['detail-type'])).toContain('Replacement Requested');
  });
});
