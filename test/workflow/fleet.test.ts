import { demoTarget, finishOutcome, putTargetConfig, SANDBOX_ENV } from '../../sandbox/demo';
import { exceedsTolerance, type FleetRun, LocalFleet, localFleetDefinition } from '../../sandbox/fleet';
import { startWorld, type World } from './helpers';

/**
 * The fleet definition run locally (sandbox/fleet.ts says what is local-only): five targets on one
 * sandbox account, each item a real replace run, one of them on an image whose cloud-init fails.
 */
const TARGETS = ['web', 'api', 'shop', 'blog', 'mail'] as const;
const FAILING = 'shop';

const fleetOf = async (world: World) => {
  const good = world.target.image.imageId ?? '';
  const bad = world.sandbox.registerImage({ cloudInit: 'error', app: 'broken' }, { name: 'broken' });
  for (const name of TARGETS.slice(1)) {
    const seeded = await world.sandbox.seedTarget({ name, domain: `${name}.example.test` });
    await putTargetConfig(
      SANDBOX_ENV.PARAMETER_PREFIX,
      demoTarget(name, seeded.allocationId, name === FAILING ? bad : good),
    );
  }
  const replaceArn = `arn:aws:states:${world.sandbox.region}:${world.sandbox.accountId}:stateMachine:understudy-replace`;
  const wave = { running: 0, widest: 0 };
  const fleet = new LocalFleet(world.sandbox, replaceArn, async (input, options) => {
    wave.running += 1;
    wave.widest = Math.max(wave.widest, wave.running);
    try {
      return await (world as World).workflow.run(input, options);
    } finally {
      wave.running -= 1;
    }
  });
  return { fleet, wave };
};

const fleetInput = (toleratedFailurePercentage: number) => ({
  group: 'all',
  items: TARGETS.map((target) => ({ target, input: { target, reason: 'fleet test' } })),
  maxConcurrency: 2,
  toleratedFailurePercentage,
});

const outcomes = (run: FleetRun) =>
  Object.fromEntries(Object.entries(run.runs).map(([target, r]) => [target, finishOutcome(r)]));

describe('a fleet of five targets with one failing replacement', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('succeeds under the tolerated percentage: four replaced, one rolled back and counted as failed', async () => {
    world = await startWorld({ terraform: false });
    const { fleet, wave } = await fleetOf(world);

    const run = await fleet.run(fleetInput(20));

    expect(run.status).toBe('SUCCEEDED');
    expect(outcomes(run)).toEqual({
      web: 'replaced',
      api: 'replaced',
      shop: 'rolled-back',
      blog: 'replaced',
      mail: 'replaced',
    });
    expect(run.items.filter((i) => i.status === 'SUCCEEDED').map((i) => i.target)).toEqual([
      'web',
      'api',
      'blog',
      'mail',
    ]);
    const failed = run.items.filter((i) => i.status === 'FAILED');
    expect(failed.map((i) => [i.target, i.error])).toEqual([[FAILING, 'States.TaskFailed']]);
    // The cause is the child's DescribeExecution document, as startExecution.sync:2 reports a failed run.
    expect(JSON.parse(failed[0]?.cause ?? '{}')).toMatchObject({
      Status: 'FAILED',
      Input: { target: FAILING },
    });
    expect(run.output).toMatchObject({ group: 'all', targets: 5 });
    // maxConcurrency 2: the replacements ran in waves of two, never more.
    expect(wave.widest).toBe(2);
  });

  it('fails over the tolerated percentage, naming the failed target', async () => {
    world = await startWorld({ terraform: false });
    const { fleet } = await fleetOf(world);

    const run = await fleet.run(fleetInput(10));

    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('States.ExceedToleratedFailureThreshold');
    expect(run.cause).toContain(`1 of 5 items failed, more than the tolerated 10%: ${FAILING}`);
  });

  it('names each replace run after its target and a digest of the fleet execution', async () => {
    world = await startWorld({ terraform: false });
    const { fleet } = await fleetOf(world);

    const run = await fleet.run(fleetInput(20), { name: 'wave-test' });

    const names = Object.values(run.runs).map((r) => r.executionArn.split(':').pop() ?? '');
    expect(names).toHaveLength(5);
    for (const name of names) expect(name).toMatch(/^[a-z]+-fleet-[0-9a-f]{32}$/);
    expect(new Set(names.map((n) => n.split('-fleet-')[1])).size).toBe(1);
  });
});

describe('the counted-failure rule (the Map Run threshold, expressed locally)', () => {
  it.each([
    [1, 5, 20, false],
    [1, 5, 19.9, true],
    [0, 5, 0, false],
    [1, 5, 0, true],
    [5, 5, 100, false],
  ])('%i failed of %i with %d%% tolerated exceeds it: %s', (failed, total, tolerated, exceeds) => {
    expect(exceedsTolerance(failed, total, tolerated)).toBe(exceeds);
  });

  it('runs the Map INLINE without the DISTRIBUTED-only fields, keeping the per-item Catch', () => {
    const definition = localFleetDefinition(
      { region: 'eu-west-1', accountId: '123456789012' },
      'arn:x',
    ) as unknown as {
      States: Record<string, Record<string, unknown>>;
    };
    const map = definition.States.ReplaceTargets as {
      ItemProcessor: { ProcessorConfig: unknown; States: Record<string, { Type: string; End?: boolean }> };
      ToleratedFailurePercentagePath?: string;
      Next: string;
    };
    expect(map.ItemProcessor.ProcessorConfig).toEqual({ Mode: 'INLINE' });
    expect(map.ToleratedFailurePercentagePath).toBeUndefined();
    expect(map.ItemProcessor.States.ItemFailed).toBeUndefined();
    expect(map.ItemProcessor.States.RecordFailure?.End).toBe(true);
    expect(map.Next).toBe('CountFailures');
    expect(definition.States.CountFailures?.Next).toBe('Summarize');
  });
});
