import { DescribeInstancesCommand } from '@aws-sdk/client-ec2';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { clients } from '../../lambdas/shared/clients';
import { runKeys } from '../../lambdas/shared/constants';
import type { ImageBehaviour } from '../../sandbox/contracts';
import { SANDBOX_ENV } from '../../sandbox/demo';
import { DEMO_TERRAFORM } from '../../sandbox/terraform';
import type { HandlerSet, WorkflowRun } from '../../sandbox/workflow';
import { type Before, captureBefore, violations } from '../faults/invariants';
import { outcomeMessages } from './helpers';
import { eventsByStep, type RecordingWorld, startRecordingWorld } from './recording';

/**
 * Issue 5, crashes: Step Functions runs a task again when its answer was lost (a retry), and a redrive
 * starts a failed execution again from the step that failed, with that step's original input. Either
 * way a function is asked a question it already answered. Here every function of a finished run is
 * asked again, with each input it was given, and must change nothing: the run is over, whatever it
 * decided stands. And an execution whose Finish failed for good, so it ended FAILED with its lock held
 * and no outcome, is redriven from Finish once Finish works again: it must end as the run did.
 */

const objectText = async (bucket: string, key: string): Promise<string | undefined> => {
  try {
    const out = await clients().s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return await out.Body?.transformToString();
  } catch {
    return undefined;
  }
};

/** What a repeated task could disturb, read back from the account. */
const snapshot = async (world: RecordingWorld) => {
  const out = await clients().ec2.send(new DescribeInstancesCommand({}));
  const instances = (out.Reservations ?? [])
    .flatMap((r) => r.Instances ?? [])
    .map((i) => ({
      id: i.InstanceId,
      state: i.State?.Name === 'stopping' ? 'stopped' : i.State?.Name,
      tags: Object.fromEntries((i.Tags ?? []).map((t) => [t.Key, t.Value])),
    }))
    .sort((a, b) => String(a.id).localeCompare(String(b.id)));
  return {
    instances,
    eip: world.sandbox.eipInstance(world.seeded.allocationId),
    state: await objectText(DEMO_TERRAFORM.bucket, DEMO_TERRAFORM.key),
    lock: await objectText(SANDBOX_ENV.RUNS_BUCKET, runKeys.lock(world.target.name)),
    outcomes: outcomeMessages(world).length,
  };
};

/** The calls that would move traffic or make a box. */
const MOVES = /^(RunInstances|AssociateAddress|DisassociateAddress|StartInstances)$/;

interface Finished {
  readonly world: RecordingWorld;
  readonly run: WorkflowRun & { outcome: string | undefined };
  readonly before: Before;
}

const HEALTHY = { cloudInit: 'done', app: 'healthy' } as const;
/** Healthy through the switch, failing during the bake: every step up to the switch succeeded. */
const FAILS_IN_BAKE = { cloudInit: 'done', app: { healthyForMs: 40_000 } } as const;

const finishedRun = async (newImage: ImageBehaviour): Promise<Finished> => {
  const world = await startRecordingWorld({ newImage });
  const before = await captureBefore(world);
  const run = await world.run();
  return { world, run, before };
};

/**
 * Asks `step` again with every input it was given during the run, then checks that nothing moved. Each
 * answer may be a refusal (the lock is gone, the token is closed) or the same answer as before; what
 * matters is the account.
 */
const askAgain = async (finished: Finished, step: string) => {
  const { world } = finished;
  const events = eventsByStep(world.invocations).get(step) ?? [];
  expect(events.length).toBeGreaterThan(0);
  const after = await snapshot(world);
  const mark = world.sandbox.calls.length;
  for (const event of events) await world.invoke(step, event);
  const moves = world.sandbox.calls.slice(mark).filter((c) => c.mutating && !c.error && MOVES.test(c.action));
  return { after, now: await snapshot(world), moves };
};

const HAPPY_STEPS = [
  'preflight',
  'launch',
  'await-running',
  'await-readiness',
  'prepare',
  'await-command',
  'switch',
  'probe',
  'reconcile',
  'retire',
  'finish',
];
/**
 * Preflight is left out: asked again once the run ended with the old box serving, it plans the same
 * replacement and takes the lock anew for the ended execution, which only the lease then frees. Step
 * Functions cannot ask it at that point (its function times out before its Task does, and its errors
 * are all caught, so a redrive never restarts there).
 */
const ROLLBACK_STEPS = [
  'launch',
  'await-running',
  'await-readiness',
  'prepare',
  'await-command',
  'switch',
  'probe',
  'rollback',
  'finish',
];

describe('a task run again after a replacement succeeded', () => {
  let finished: Finished;
  beforeAll(async () => {
    finished = await finishedRun(HEALTHY);
  });
  afterAll(() => finished.world.stop());

  it('was a replacement to begin with', async () => {
    expect(finished.run.outcome).toBe('replaced');
    expect(await violations(finished.world, finished.run, finished.before)).toEqual([]);
  });

  it.each(HAPPY_STEPS)(
    '%s asked again changes nothing: no new box, no EIP move, the same state, no lock, no second outcome',
    async (step) => {
      const { after, now, moves } = await askAgain(finished, step);

      expect(moves).toEqual([]);
      expect(now).toEqual(after);
      expect(now.lock).toBeUndefined();
      expect(now.outcomes).toBe(1);
      expect(now.eip).not.toBe(finished.world.seeded.oldInstanceId);
      expect(await violations(finished.world, finished.run, finished.before)).toEqual([]);
    },
  );
});

describe('a task run again after a later task failed and the run rolled back', () => {
  let finished: Finished;
  beforeAll(async () => {
    finished = await finishedRun(FAILS_IN_BAKE);
  });
  afterAll(() => finished.world.stop());

  it('was a rollback after the switch to begin with', async () => {
    expect(finished.run.outcome).toBe('rolled-back');
    expect(finished.world.invocations.some((i) => i.step === 'switch' && i.ok)).toBe(true);
    expect(await violations(finished.world, finished.run, finished.before)).toEqual([]);
  });

  it.each(ROLLBACK_STEPS)(
    '%s asked again leaves the EIP on the old box and no box running but the old one',
    async (step) => {
      const { after, now, moves } = await askAgain(finished, step);

      expect(moves).toEqual([]);
      expect(now).toEqual(after);
      expect(now.eip).toBe(finished.world.seeded.oldInstanceId);
      expect(now.instances.filter((i) => i.state === 'running').map((i) => i.id)).toEqual([
        finished.world.seeded.oldInstanceId,
      ]);
      expect(now.lock).toBeUndefined();
      expect(await violations(finished.world, finished.run, finished.before)).toEqual([]);
    },
  );
});

/**
 * A Finish that fails for good until it is fixed: it refuses to run (a deploy broke it, its role lost a
 * permission), or it does all its work and then dies each time before answering.
 */
const breakableFinish = (mode: 'refuses' | 'dies-after-its-work') => {
  const switchboard = { broken: true, failures: 0 };
  const wrap = (handlers: HandlerSet): HandlerSet => ({
    ...handlers,
    finish: async (event, context) => {
      const finish = handlers.finish as NonNullable<HandlerSet['finish']>;
      if (!switchboard.broken) return finish(event, context);
      switchboard.failures += 1;
      if (mode === 'dies-after-its-work') await finish(event, context);
      const error = new Error('User is not authorized to perform: s3:PutObject (injected)');
      error.name = 'AccessDenied';
      throw error;
    },
  });
  return { switchboard, wrap };
};

describe('a redrive from Finish after it failed for good', () => {
  let world: RecordingWorld | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it.each([
    ['a replacement', 'refused to run', 'refuses', HEALTHY, 'replaced'],
    ['a rollback', 'refused to run', 'refuses', FAILS_IN_BAKE, 'rolled-back'],
    ['a replacement', 'died after its work', 'dies-after-its-work', HEALTHY, 'replaced'],
    ['a rollback', 'died after its work', 'dies-after-its-work', FAILS_IN_BAKE, 'rolled-back'],
  ] as const)(
    'ends %s whose Finish %s with its lock released and exactly one truthful outcome',
    async (_, __, mode, newImage, expected) => {
      const { switchboard, wrap } = breakableFinish(mode);
      world = await startRecordingWorld({ newImage, wrap });
      const before = await captureBefore(world);
      const run = await world.run();
      expect(run.status).toBe('FAILED');
      expect(switchboard.failures).toBeGreaterThan(0);
      expect(outcomeMessages(world)).toEqual([]);

      switchboard.broken = false;
      const redriven = await world.run(undefined, {
        name: run.executionArn.split(':').pop() as string,
        redrive: { from: 'Finish', input: run.inputs.Finish, count: 1 },
      });

      expect(redriven.status).toBe(expected === 'replaced' ? 'SUCCEEDED' : 'FAILED');
      expect(redriven.outcome).toBe(expected);
      expect(outcomeMessages(world).map((m) => m.attributes.event)).toEqual([expected]);
      // The invariants read the plan and the launch from the first attempt, the outcome from the redrive.
      const whole = { ...redriven, outputs: { ...run.outputs, ...redriven.outputs } };
      expect(await violations(world, whole, before)).toEqual([]);
    },
  );
});
