import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import {
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  type Instance,
} from '@aws-sdk/client-ec2';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { GetScheduleCommand } from '@aws-sdk/client-scheduler';
import { clients, schedulerClient } from '../../lambdas/shared/clients';
import { runKeys, Tags } from '../../lambdas/shared/constants';
import { httpGet } from '../../lambdas/shared/http';
import { atExpression, scheduleName } from '../../lambdas/shared/retirement';
import { reconcileState } from '../../lambdas/shared/tfstate/reconcile';
import { readState, writeState } from '../../lambdas/shared/tfstate/state';
import { SANDBOX_ENV } from '../../sandbox/demo';
import { DEMO_TERRAFORM } from '../../sandbox/terraform';
import type { WorkflowRun } from '../../sandbox/workflow';
import type { World } from '../workflow/helpers';

/**
 * The five invariants of issue 5: after a run ends, however it ended, the service is safe. Each check
 * returns what it found wrong in words, so a failing cell says which invariant broke and how; an empty
 * list is a safe run. Everything is read back from the account (the sandbox's API, as an operator's CLI
 * would), not from what the run says about itself.
 */

export interface Before {
  /** The Terraform state object's text before the run (undefined when the server is not managed). */
  readonly stateText: string | undefined;
  /**
   * The box behind the Elastic IP before the run: the seeded one, or after a setup replacement the
   * newer box a rollback-by-request undoes (what "the old box" means for that run).
   */
  readonly serving: string;
  /** The target's boxes sleeping in a rollback window before the run (a rollback's box to restore). */
  readonly retired: readonly string[];
  /** Messages published before the run (a setup run's own outcome is not this run's). */
  readonly messages: number;
}

/** What to capture before the run, to compare after it. */
export const captureBefore = async (world: World): Promise<Before> => ({
  stateText: world.target.terraform ? await objectText(DEMO_TERRAFORM.bucket, DEMO_TERRAFORM.key) : undefined,
  serving: world.sandbox.eipInstance(world.seeded.allocationId) ?? world.seeded.oldInstanceId,
  retired: (await allInstances())
    .filter((i) => tag(i, Tags.target) === world.target.name && tag(i, Tags.role) === 'retired' && !gone(i))
    .flatMap((i) => (i.InstanceId ? [i.InstanceId] : [])),
  messages: world.sandbox.messages.length,
});

const objectText = async (bucket: string, key: string): Promise<string | undefined> => {
  try {
    const out = await clients().s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return await out.Body?.transformToString();
  } catch (error) {
    if ((error as Error).name === 'NoSuchKey') return undefined;
    throw error;
  }
};

const allInstances = async (): Promise<Instance[]> => {
  const out = await clients().ec2.send(new DescribeInstancesCommand({}));
  return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
};

const tag = (instance: Instance | undefined, key: string) =>
  instance?.Tags?.find((t) => t.Key === key)?.Value;
const stateOf = (instance: Instance | undefined) => instance?.State?.Name ?? 'unknown';
const halted = (instance: Instance | undefined) => /^(stopping|stopped)$/.test(stateOf(instance));
const gone = (instance: Instance | undefined) => /^(shutting-down|terminated)$/.test(stateOf(instance));

interface Baseline {
  readonly healthy?: boolean;
}
const baselineOf = (run: WorkflowRun): Baseline | undefined =>
  (run.outputs.Preflight as { run?: { baseline?: Baseline } } | undefined)?.run?.baseline;

/** 1. The EIP is on a running instance that answers the health check through it. */
const eipServes = async (world: World, run: WorkflowRun, outcome: string | undefined): Promise<string[]> => {
  const { allocationId, publicIp } = world.seeded;
  const on = world.sandbox.eipInstance(allocationId);
  if (!on) return [`1: the Elastic IP ${allocationId} is associated with nothing`];
  const instance = (await allInstances()).find((i) => i.InstanceId === on);
  if (baselineOf(run)?.healthy === false) {
    // A box already sick before the run: the message must say where the EIP is and that it is unhealthy.
    const problems: string[] = [];
    if (!outcome?.includes(on)) problems.push(`1: the outcome message does not say the EIP is on ${on}`);
    if (!/not healthy|unhealthy/.test(outcome ?? '')) {
      problems.push('1: the baseline was unhealthy but the outcome message does not say so');
    }
    return problems;
  }
  if (stateOf(instance) !== 'running') {
    return [`1: the Elastic IP is on ${on}, which is ${stateOf(instance)}, not running`];
  }
  const { health, tls, domain } = world.target;
  const response = await httpGet({
    address: publicIp,
    scheme: tls.mode === 'none' ? 'http' : 'https',
    domain,
    path: health.path,
    timeoutMs: health.requestTimeoutSeconds * 1000,
  });
  if (!response.ok || response.status !== health.expectStatus) {
    return [`1: ${on} behind the Elastic IP fails the health check (${response.status ?? 'no answer'})`];
  }
  // Over HTTPS the check above already verified the chain for the domain; the probe also wants it fresh.
  const daysLeft = response.certificateDaysLeft;
  if (tls.mode !== 'none' && (daysLeft === undefined || daysLeft < health.certificateMinDaysLeft)) {
    return [`1: ${on} serves a certificate with ${daysLeft ?? 'unknown'} days left`];
  }
  return [];
};

/** 2. At most one candidate; every instance Understudy launched is tagged and serving, retired or failed. */
const instancesAccountedFor = async (world: World, run: WorkflowRun, before: Before): Promise<string[]> => {
  const problems: string[] = [];
  const instances = await allInstances();
  const serving = world.sandbox.eipInstance(world.seeded.allocationId);
  const target = world.target.name;
  const candidates = instances.filter(
    (i) => tag(i, Tags.target) === target && tag(i, Tags.role) === 'candidate' && !gone(i),
  );
  if (candidates.length > 1) {
    problems.push(`2: ${candidates.length} candidates for ${target}: ${candidates.map((i) => i.InstanceId)}`);
  }
  const execution = run.executionArn.split(':').pop() ?? '';
  const prior = before.serving;
  const launched = instances.filter(
    (i) => i.InstanceId !== world.seeded.oldInstanceId && i.InstanceId !== prior,
  );
  const ours = launched.filter((i) => tag(i, Tags.execution) === execution);
  if (ours.length > 1) problems.push(`2: the run launched ${ours.length} instances`);
  for (const instance of launched) {
    const id = instance.InstanceId;
    // Another execution's tag is fine: a run that died left it, and this one parked it after its takeover.
    if (tag(instance, Tags.target) !== target || tag(instance, Tags.execution) === undefined) {
      problems.push(`2: ${id} (${stateOf(instance)}) lacks its understudy:target/execution tags`);
      continue;
    }
    const role = tag(instance, Tags.role);
    const isServing = id === serving && stateOf(instance) === 'running';
    const retired = role === 'retired' && halted(instance) && tag(instance, Tags.retireAfter) !== undefined;
    const failed = role === 'failed' && (halted(instance) || gone(instance));
    if (!isServing && !retired && !failed) {
      problems.push(
        `2: ${id} is ${stateOf(instance)} with role ${role ?? 'none'}: neither serving, retired nor failed`,
      );
    }
  }
  const old = instances.find((i) => i.InstanceId === prior);
  if (old && old.InstanceId !== serving && stateOf(old) !== 'running') {
    const retired = tag(old, Tags.role) === 'retired' && tag(old, Tags.retireAfter) !== undefined;
    if (!retired)
      problems.push(`2: the old box is ${stateOf(old)} but not tagged retired with a retire-after time`);
  }
  // A box brought back from its window either serves again or sleeps again in that window: never left
  // running beside the box that serves.
  for (const id of before.retired) {
    const box = instances.find((i) => i.InstanceId === id);
    if (id === serving && stateOf(box) === 'running') continue;
    if (!halted(box) || tag(box, Tags.role) !== 'retired' || tag(box, Tags.retireAfter) === undefined) {
      problems.push(
        `2: the retired box ${id} does not serve and is ${stateOf(box)} with role ${tag(box, Tags.role) ?? 'none'}, not asleep in its window`,
      );
    }
  }
  return problems;
};

const md5 = (text: string) => createHash('md5').update(text).digest('hex');
const lockItem = async (lockId: string) =>
  (
    await clients().dynamodb.send(
      new GetItemCommand({
        TableName: DEMO_TERRAFORM.table,
        Key: { LockID: { S: lockId } },
        ConsistentRead: true,
      }),
    )
  ).Item;

/** The state the reconcile must have written for the instance serving now, from the original state. */
const expectedReconciled = async (
  original: string,
  serving: string,
  world: World,
  prior: string,
): Promise<string> => {
  const { ec2 } = clients();
  const [described, addresses, volumes] = await Promise.all([
    ec2.send(new DescribeInstancesCommand({ InstanceIds: [serving] })),
    ec2.send(new DescribeAddressesCommand({ AllocationIds: [world.seeded.allocationId] })),
    ec2.send(
      new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [serving] }] }),
    ),
  ]);
  const instance = described.Reservations?.[0]?.Instances?.[0];
  if (!instance) throw new Error(`no instance ${serving}`);
  const result = reconcileState(readState(original), {
    instanceAddress: DEMO_TERRAFORM.instanceAddress,
    instance,
    addresses: addresses.Addresses ?? [],
    volumes: volumes.Volumes ?? [],
    expectInstanceId: prior,
  });
  return writeState(result.state);
};

/** 3. The state is untouched or exactly the reconciled one, backed up first, with a matching digest. */
const stateConsistent = async (world: World, before: Before): Promise<string[]> => {
  const original = before.stateText;
  if (original === undefined) return [];
  const problems: string[] = [];
  const now = await objectText(DEMO_TERRAFORM.bucket, DEMO_TERRAFORM.key);
  if (now === undefined) return ['3: the Terraform state object is gone'];
  if (now !== original) {
    const serving = world.sandbox.eipInstance(world.seeded.allocationId);
    if (!serving || serving === before.serving) {
      problems.push('3: the state changed although the old box still serves');
    } else if (now !== (await expectedReconciled(original, serving, world, before.serving))) {
      problems.push(`3: the state is neither the original nor the state reconciled to ${serving}`);
    }
    const backups = world.sandbox
      .objectKeys(DEMO_TERRAFORM.bucket)
      .filter((key) => key.startsWith(`${DEMO_TERRAFORM.key}.understudy-backups/`));
    const texts = await Promise.all(backups.map((key) => objectText(DEMO_TERRAFORM.bucket, key)));
    if (!texts.includes(original)) problems.push('3: the state changed but no backup holds the original');
  }
  const digest = (await lockItem(`${DEMO_TERRAFORM.bucket}/${DEMO_TERRAFORM.key}-md5`))?.Digest?.S;
  if (digest !== md5(now)) problems.push(`3: the DynamoDB digest ${digest} does not match the state`);
  return problems;
};

/** 4. No lock left: the target lock, Terraform's .tflock, the DynamoDB lock item. */
const noLockLeft = async (world: World): Promise<string[]> => {
  const problems: string[] = [];
  const targetLock = await objectText(SANDBOX_ENV.RUNS_BUCKET, runKeys.lock(world.target.name));
  if (targetLock !== undefined) problems.push(`4: the target lock is still held: ${targetLock}`);
  if (world.target.terraform) {
    if ((await objectText(DEMO_TERRAFORM.bucket, `${DEMO_TERRAFORM.key}.tflock`)) !== undefined) {
      problems.push('4: the Terraform .tflock is still there');
    }
    if ((await lockItem(`${DEMO_TERRAFORM.bucket}/${DEMO_TERRAFORM.key}`)) !== undefined) {
      problems.push('4: the DynamoDB lock item is still there');
    }
  }
  return problems;
};

/** 5. Exactly one outcome message, and what it claims is where the EIP is. */
const runOutcomes = (world: World, before: Before) =>
  world.sandbox.messages.slice(before.messages).filter((m) => m.attributes.kind === 'outcome');

const oneTruthfulOutcome = (world: World, run: WorkflowRun, before: Before): string[] => {
  const outcomes = runOutcomes(world, before);
  if (outcomes.length !== 1) return [`5: ${outcomes.length} outcome messages`];
  const event = outcomes[0]?.attributes.event;
  const on = world.sandbox.eipInstance(world.seeded.allocationId);
  const moved = on !== before.serving;
  const launchedBy = (state: string) =>
    (run.outputs[state] as { launch?: { instanceId?: string } } | undefined)?.launch?.instanceId;
  const launched = launchedBy('Launch');
  if (event === 'replaced' && (!moved || (launched && on !== launched))) {
    return [`5: the message says replaced but the EIP is on ${on}`];
  }
  const restored = launchedBy('StartRetired');
  if (event === 'rolled-back-by-request' && (!moved || (restored && on !== restored))) {
    return [`5: the message says rolled back by request but the EIP is on ${on}`];
  }
  if ((event === 'rolled-back' || event === 'failed' || event === 'no-op') && moved) {
    return [`5: the message says ${event} but the EIP is on ${on}, not the old box`];
  }
  if (event === 'manual-action-needed' && !outcomes[0]?.message.includes(world.seeded.allocationId)) {
    return ['5: manual action needed, but the message does not name the Elastic IP to fix'];
  }
  return [];
};

/**
 * When the new image is bad whatever a fault does (the rollback source), a run may only end one way:
 * the Elastic IP back on the old box and an outcome that says rolled-back. The health checks of
 * invariant 1 alone could miss the EIP left on the candidate while its app still answers.
 */
const rolledBackFromBadCandidate = (world: World, before: Before, event: string): string[] => {
  const problems: string[] = [];
  const on = world.sandbox.eipInstance(world.seeded.allocationId);
  if (on !== before.serving) {
    problems.push(
      `1: the box brought in is bad, but the Elastic IP is on ${on ?? 'nothing'}, not the box that served before`,
    );
  }
  const events = runOutcomes(world, before).map((m) => m.attributes.event);
  if (events.length === 1 && events[0] !== event) {
    problems.push(`5: the box brought in is bad, but the outcome is ${events[0]}, not ${event}`);
  }
  return problems;
};

/**
 * The end of each rollback window is a Scheduler schedule (design §2.10): every box asleep in its window
 * has the one that terminates it when the window ends, not earlier; the box serving has none and is not
 * tagged retired (the retirement role may terminate exactly the boxes tagged so).
 */
const windowsScheduled = async (world: World): Promise<string[]> => {
  const problems: string[] = [];
  const serving = world.sandbox.eipInstance(world.seeded.allocationId);
  const schedule = async (id: string) => {
    try {
      return await schedulerClient().send(
        new GetScheduleCommand({
          Name: scheduleName(world.target.name, id),
          GroupName: SANDBOX_ENV.SCHEDULE_GROUP,
        }),
      );
    } catch (error) {
      if ((error as Error).name === 'ResourceNotFoundException') return undefined;
      throw error;
    }
  };
  const boxes = (await allInstances()).filter((i) => tag(i, Tags.target) === world.target.name && !gone(i));
  for (const box of boxes) {
    const id = box.InstanceId ?? '';
    const found = await schedule(id);
    if (id === serving) {
      if (found)
        problems.push(`2: ${id} serves, but a schedule will terminate it at ${found.ScheduleExpression}`);
      if (tag(box, Tags.role) === 'retired') problems.push(`2: ${id} serves, but is tagged retired`);
      continue;
    }
    const retireAfter = tag(box, Tags.retireAfter);
    if (tag(box, Tags.role) !== 'retired' || retireAfter === undefined) continue;
    if (!found) {
      problems.push(`2: ${id} is retired until ${retireAfter}, but no schedule ends its window`);
    } else if (
      found.ScheduleExpression !== atExpression(retireAfter) &&
      Date.parse(retireAfter) > Date.now()
    ) {
      problems.push(
        `2: ${id} is retired until ${retireAfter}, but its schedule says ${found.ScheduleExpression}`,
      );
    } else if (found.Target?.Input !== JSON.stringify({ InstanceIds: [id] })) {
      problems.push(`2: the schedule of ${id} terminates ${found.Target?.Input ?? 'nothing'}`);
    }
  }
  return problems;
};

/** A hook's lines run once per box and run (its SSM command is one per execution and hook point). */
const hooksRanOnce = async (world: World): Promise<string[]> =>
  (await allInstances()).flatMap(({ InstanceId: id = '' }) => {
    const path = join(world.sandbox.instanceDir(id), 'hooks.log');
    const lines = existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n') : [];
    const repeated = [...new Set(lines.filter((line, i) => lines.indexOf(line) !== i))];
    return repeated.map((line) => `hooks: "${line}" ran more than once on ${id}`);
  });

/** What the source run tells about how any run of it must end. */
export interface Expectation {
  readonly candidateIsBad: boolean;
  /** How the source run ends: with a bad candidate, the only outcome any of its cells may announce. */
  readonly outcome?: string;
  /** Whether the rollback windows' schedules are checked (the sources that retire or restore a box). */
  readonly windows?: boolean;
  /** Whether the hooks' lines are checked to have run at most once per box. */
  readonly hooks?: boolean;
}

/** Every broken invariant, in words; empty when the run left the service safe. */
export const violations = async (
  world: World,
  run: WorkflowRun,
  before: Before,
  expected: Expectation = { candidateIsBad: false },
): Promise<string[]> => {
  const outcome = runOutcomes(world, before)[0]?.message;
  return [
    ...(expected.candidateIsBad
      ? rolledBackFromBadCandidate(world, before, expected.outcome ?? 'rolled-back')
      : []),
    ...(await eipServes(world, run, outcome)),
    ...(await instancesAccountedFor(world, run, before)),
    ...(expected.windows ? await windowsScheduled(world) : []),
    ...(expected.hooks ? await hooksRanOnce(world) : []),
    ...(await stateConsistent(world, before)),
    ...(await noLockLeft(world)),
    ...oneTruthfulOutcome(world, run, before),
  ];
};
