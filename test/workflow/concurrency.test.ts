import { DescribeInstancesCommand, type Instance } from '@aws-sdk/client-ec2';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { clients } from '../../lambdas/shared/clients';
import { LOCK_LEASE_SECONDS, runKeys, Tags } from '../../lambdas/shared/constants';
import type { CallRecord } from '../../sandbox/contracts';
import { SANDBOX_ENV } from '../../sandbox/demo';
import { captureBefore, violations } from '../faults/invariants';
import type { World } from './helpers';
import { asSeenBy, messagesOf, type RecordingWorld, startRecordingWorld } from './recording';

/**
 * Issue 5, concurrency: two executions for one target (started together, or one while the other
 * bakes), and an execution that died holding the target lock. The target lock is the only thing that keeps two runs from replacing the same box at once, so
 * every case checks what the losing run did to the account, not only what it said.
 */

const lockBody = async (target = 'web') => {
  try {
    const out = await clients().s3.send(
      new GetObjectCommand({ Bucket: SANDBOX_ENV.RUNS_BUCKET, Key: runKeys.lock(target) }),
    );
    return JSON.parse((await out.Body?.transformToString()) ?? '{}') as {
      owner?: string;
      executionName?: string;
    };
  } catch {
    return undefined;
  }
};

const instances = async (): Promise<Instance[]> => {
  const out = await clients().ec2.send(new DescribeInstancesCommand({}));
  return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
};

const outcomeOf = (world: World, execution: string) => messagesOf(world, execution, 'outcome');

const executionArn = (world: World, name: string) =>
  `arn:aws:states:${world.sandbox.region}:${world.sandbox.accountId}:execution:understudy-replace:${name}`;

/** A run record or a notification is how a refused run reports; anything else it changed is a side effect. */
const isReport = (call: CallRecord) =>
  call.service === 'sns' ||
  (call.service === 's3' && String((call.input as { Key?: unknown }).Key ?? '').startsWith('runs/'));

const executionOf = (world: World, name: string) => ({
  arn: executionArn(world, name),
  name,
  redriveCount: 0,
  startTime: new Date().toISOString(),
});

/** What an execution that Step Functions stopped right after Preflight leaves behind: the lock, nothing else. */
const dieAfterPreflight = async (world: RecordingWorld, name: string) => {
  const preflight = await world.invoke('preflight', {
    input: { target: 'web' },
    execution: executionOf(world, name),
  });
  if (!preflight.ok) throw new Error(`the dying run's preflight failed: ${preflight.error}`);
  return preflight.value;
};

describe('concurrent executions on one target', () => {
  let world: RecordingWorld | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('lets exactly one of two executions started together replace the box and refuses the other, naming the holder, before it changes anything', async () => {
    world = await startRecordingWorld();
    const current = world;
    const before = await captureBefore(current);

    const runs = await Promise.all([
      current.run({ target: 'web' }, { name: 'alpha' }),
      current.run({ target: 'web' }, { name: 'bravo' }),
    ]);
    const winner = runs.find((r) => r.outcome === 'replaced');
    const loser = runs.find((r) => r !== winner);
    const winnerName = winner?.executionArn.split(':').pop() ?? 'none';
    const loserName = loser?.executionArn.split(':').pop() ?? 'none';

    expect(runs.map((r) => r.outcome).sort()).toEqual(['failed', 'replaced']);
    expect(loser?.status).toBe('FAILED');
    expect(loser?.cause).toContain(winnerName);
    const [refusal, ...more] = outcomeOf(current, loserName);
    expect(more).toHaveLength(0);
    expect(refusal?.message).toContain(winnerName);

    const loserCalls = current.sandbox.calls.filter(
      (c) => current.executionOf(c) === loserName && c.mutating,
    );
    // Its one attempt at the lock was refused by the conditional write; everything else it wrote is its report.
    const attempts = loserCalls.filter((c) => !isReport(c));
    expect(attempts.map((c) => `${c.service}:${c.action}:${c.error ?? 'ok'}`)).toEqual([
      's3:PutObject:PreconditionFailed',
    ]);
    expect(loserCalls.filter((c) => c.service === 'ec2' || c.service === 'ssm')).toEqual([]);

    const launched = (await instances()).filter((i) => i.InstanceId !== current.seeded.oldInstanceId);
    expect(launched.map((i) => i.Tags?.find((t) => t.Key === Tags.execution)?.Value)).toEqual([winnerName]);
    expect(
      await violations(asSeenBy(current, winnerName), winner as NonNullable<typeof winner>, before),
    ).toEqual([]);
  });

  it('refuses, naming the holder, an execution started while another bakes the image it asks for, and that run then rolls back', async () => {
    world = await startRecordingWorld({ newImage: { cloudInit: 'done', app: { healthyForMs: 40_000 } } });
    const current = world;
    const before = await captureBefore(current);
    let second: ReturnType<RecordingWorld['run']> | undefined;

    const first = await current.run(
      { target: 'web' },
      {
        name: 'baking',
        // After the switch the EIP is on a box that already runs the image the second run asks for.
        onStateEntered: (state) => {
          if (state === 'Probe' && !second) second = current.run({ target: 'web' }, { name: 'eager' });
        },
      },
    );
    const late = await (second as NonNullable<typeof second>);

    expect(first.outcome).toBe('rolled-back');
    expect(late.status).toBe('FAILED');
    expect(late.outcome).toBe('failed');
    expect(late.cause).toContain('baking');
    expect(
      messagesOf(current, 'eager', 'outcome')
        .map((m) => m.message)
        .join(''),
    ).toContain('baking');
    expect(await violations(asSeenBy(current, 'baking'), first, before)).toEqual([]);
  });

  it('refuses a run while the lease of an execution that died holding the lock lasts, naming that execution, and leaves its lock alone', async () => {
    world = await startRecordingWorld();
    const current = world;
    await dieAfterPreflight(current, 'dead');
    // One minute before the lease runs out, the dead run could still be a slow live one.
    await current.sandbox.clock.sleep((LOCK_LEASE_SECONDS - 60) * 1000);
    const mark = current.sandbox.calls.length;

    const run = await current.run({ target: 'web' }, { name: 'hasty' });

    expect(run.status).toBe('FAILED');
    expect(run.outcome).toBe('failed');
    expect(run.cause).toContain('dead');
    expect(outcomeOf(current, 'hasty')[0]?.message).toContain('dead');
    const changed = current.sandbox.calls.slice(mark).filter((c) => c.mutating && !c.error && !isReport(c));
    expect(changed).toEqual([]);
    expect((await lockBody())?.owner).toBe(executionArn(current, 'dead'));
    expect(current.sandbox.eipInstance(current.seeded.allocationId)).toBe(current.seeded.oldInstanceId);
  });

  it('takes over the lock of an execution that died holding it once the lease ran out, says so, and replaces the box safely', async () => {
    world = await startRecordingWorld();
    const current = world;
    await dieAfterPreflight(current, 'dead');
    const before = await captureBefore(current);
    await current.sandbox.clock.sleep((LOCK_LEASE_SECONDS + 60) * 1000);

    const run = await current.run({ target: 'web' }, { name: 'heir' });

    expect(run.outcome).toBe('replaced');
    const warnings = messagesOf(current, 'heir', 'warning');
    const takeover = warnings.find((m) => m.attributes.event === 'lock-taken-over');
    expect(takeover?.message).toContain(executionArn(current, 'dead'));
    expect(await lockBody()).toBeUndefined();
    expect(await violations(current, run, before)).toEqual([]);
  });

  it('parks the candidate a run that died after launching left behind when it takes over the lock, says so, and replaces the box with one new instance of its own', async () => {
    world = await startRecordingWorld();
    const current = world;
    const plan = await dieAfterPreflight(current, 'dead');
    const launched = await current.invoke('launch', {
      input: { target: 'web' },
      execution: executionOf(current, 'dead'),
      run: plan,
    });
    const leftover = (launched as { value?: { instanceId?: string } }).value?.instanceId ?? 'none';
    await current.sandbox.clock.sleep((LOCK_LEASE_SECONDS + 60) * 1000);

    const before = await captureBefore(current);

    const run = await current.run({ target: 'web' }, { name: 'heir' });

    expect(run.outcome).toBe('replaced');
    const takeover = messagesOf(current, 'heir', 'warning').find(
      (m) => m.attributes.event === 'lock-taken-over',
    );
    expect(takeover?.message).toContain(executionArn(current, 'dead'));
    expect(takeover?.message).toContain(`candidate ${leftover} was stopped`);
    const parked = (await instances()).find((i) => i.InstanceId === leftover);
    expect(parked?.State?.Name).toMatch(/^stopp(ing|ed)$/);
    expect(parked?.Tags).toContainEqual({ Key: Tags.role, Value: 'failed' });
    expect(await violations(current, run, before)).toEqual([]);
    const heirs = (await instances()).filter((i) =>
      i.Tags?.some((t) => t.Key === Tags.execution && t.Value === 'heir'),
    );
    expect(heirs).toHaveLength(1);
    expect(current.sandbox.eipInstance(current.seeded.allocationId)).toBe(heirs[0]?.InstanceId);
    expect(await lockBody()).toBeUndefined();
  });
});
