import { DescribeImagesCommand, type Instance } from '@aws-sdk/client-ec2';
import type { SNSClient } from '@aws-sdk/client-sns';
import { awsCall, hasCode } from '../shared/aws-errors';
import type { TargetConfig } from '../shared/config';
import { LOCK_LEASE_SECONDS, runKeys, Tags } from '../shared/constants';
import { describeInstanceById, describeTargetBoxes } from '../shared/ec2';
import { refused, type UnderstudyError } from '../shared/errors';
import type { ProbeResponse } from '../shared/http';
import { acquireLock, lockHolder } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { type PhaseBus, phaseBus, publishQuietly, putPhaseEvent } from '../shared/notify';
import { judge } from '../shared/probe';
import { scheduleName } from '../shared/retirement';
import type { ExecutionContext, ExecutionInput, Plan, RestoreTarget } from '../shared/schemas';
import { servingPlanFields } from './plan-fields';
import type { PreflightClients, PreflightEnv } from './preflight';

/**
 * Preflight of `action: "rollback"` (design §2.10): the plan to bring back the target's newest retired
 * box while its window is open. Like the replace preflight, everything here reads until the checks
 * pass; a refusal names the box and why its window is closed, and leaves the account untouched.
 */

/**
 * A window that ends this soon is refused: the end-of-window schedule could fire between this check and
 * the moment the start step cancels it, and the box would go while it is being brought back.
 */
export const ROLLBACK_MARGIN_MS = 10 * 60_000;

/** What preflight.ts lends this module, so its private readers stay where they are. */
export interface RollbackPlanDeps {
  loadTarget(): Promise<TargetConfig>;
  describeEip(
    target: TargetConfig,
  ): Promise<{ instanceId: string; publicIp: string; associationId?: string }>;
  baselineProbe(target: TargetConfig, publicIp: string): Promise<ProbeResponse>;
  checkTerraformState(target: TargetConfig, servingId: string): Promise<void>;
}

const rollbackRefused = (message: string): UnderstudyError =>
  refused(`input.action: ${message}`, { field: 'input.action' });

const tagOf = (instance: Instance, key: string): string | undefined =>
  instance.Tags?.find((t) => t.Key === key)?.Value;

const GONE = new Set(['shutting-down', 'terminated']);

const windowEndOf = (instance: Instance): number => {
  const value = tagOf(instance, Tags.retireAfter);
  const at = value === undefined ? Number.NaN : Date.parse(value);
  return Number.isNaN(at) ? 0 : at;
};

/** The newest retired box, and whether its window still allows a rollback; refuses with the reason. */
export const chooseRestoreTarget = (target: string, boxes: readonly Instance[], now: number): Instance => {
  const newest = [...boxes].sort((a, b) => windowEndOf(b) - windowEndOf(a))[0];
  if (!newest) {
    throw rollbackRefused(
      `target ${target} has no retired server to roll back to: none was retired by a successful replacement, or its window ended and it was terminated`,
    );
  }
  const id = newest.InstanceId as string;
  const state = newest.State?.Name ?? 'unknown';
  const ends = windowEndOf(newest);
  const endsText = ends > 0 ? new Date(ends).toISOString() : 'an unreadable time';
  if (GONE.has(state)) {
    throw rollbackRefused(
      `the retired server ${id} of target ${target} is ${state}: its rollback window (until ${endsText}) is closed; replace the target again instead`,
    );
  }
  if (ends <= now) {
    throw rollbackRefused(
      `the rollback window of ${id} (target ${target}) ended at ${endsText}; it is about to be terminated, so roll forward with a new replacement instead`,
    );
  }
  if (ends - now < ROLLBACK_MARGIN_MS) {
    throw rollbackRefused(
      `the rollback window of ${id} (target ${target}) ends at ${endsText}, in less than ${ROLLBACK_MARGIN_MS / 60_000} minutes, too close to start it safely; replace the target again instead`,
    );
  }
  return newest;
};

export const planRollback = async (
  clients: PreflightClients,
  env: PreflightEnv,
  input: ExecutionInput,
  execution: ExecutionContext,
  deps: RollbackPlanDeps,
): Promise<Plan> => {
  const { ec2, s3, sns } = clients;
  if (input.imageId) {
    throw refused('input.imageId: a rollback brings back the retired server as it was; leave imageId out', {
      field: 'input.imageId',
    });
  }
  const configured = await deps.loadTarget();
  const eip = await deps.describeEip(configured);
  correlate({ instance: eip.instanceId });
  const serving = await describeInstanceById(ec2, eip.instanceId);
  if (!serving || GONE.has(serving.State?.Name ?? '')) {
    throw refused(
      `allocationId: instance ${eip.instanceId}, which holds Elastic IP ${configured.allocationId}, is ${serving?.State?.Name ?? 'gone'}`,
      { field: 'allocationId' },
    );
  }
  // The window is what an operator asks about first: its reason comes before any other refusal.
  // Every state: a terminated box, still shown for a while, lets the refusal say its window closed.
  const retired = await describeTargetBoxes(ec2, configured.name, 'retired');
  const chosen = chooseRestoreTarget(configured.name, retired, Date.now());
  const owner = tagOf(serving, Tags.target);
  if (owner !== configured.name) {
    throw refused(
      `allocationId: instance ${eip.instanceId} behind Elastic IP ${configured.allocationId} is not tagged ${Tags.target}=${configured.name}; only a server Understudy put there can be rolled back`,
      { field: 'allocationId' },
    );
  }
  const restoreId = chosen.InstanceId as string;
  if (restoreId === eip.instanceId) {
    throw rollbackRefused(
      `the retired server ${restoreId} already holds the Elastic IP; nothing to roll back`,
    );
  }
  const imageId = chosen.ImageId as string;
  const images = await awsCall('DescribeImages', () =>
    ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] })),
  ).catch((error: unknown) => {
    if (hasCode(error, 'InvalidAMIID.NotFound', 'InvalidAMIID.Unavailable')) return { Images: [] };
    throw error;
  });
  const image = images.Images?.[0];
  if (configured.terraform) await deps.checkTerraformState(configured, eip.instanceId);
  const probed = await deps.baselineProbe(configured, eip.publicIp);
  const baseline = judge(configured, probed);

  const restore: RestoreTarget = {
    instanceId: restoreId,
    imageId,
    state: chosen.State?.Name ?? 'unknown',
    retireAfter: new Date(windowEndOf(chosen)).toISOString(),
    scheduleName: scheduleName(configured.name, restoreId),
  };
  // The old box keeps its own TLS setup: nothing is issued or restored, only checked locally.
  const target: TargetConfig = configured;
  const plan: Plan = {
    action: 'rollback',
    target,
    image: {
      imageId,
      // The image may since have been deregistered: the box does not need it to start again.
      architecture: image?.Architecture ?? chosen.Architecture ?? 'unknown',
      rootDeviceName: image?.RootDeviceName ?? chosen.RootDeviceName ?? 'unknown',
    },
    ...servingPlanFields(serving, eip, configured.allocationId, baseline),
    needsPublicIp: false,
    restore,
    ...(input.reason ? { reason: input.reason } : {}),
  };
  logger.info('rollback plan', { restore: restoreId, retireAfter: restore.retireAfter });

  const lockKey = runKeys.lock(configured.name);
  if (input.dryRun) {
    const holder = await lockHolder(s3, env.RUNS_BUCKET, lockKey);
    return { ...plan, action: 'dry-run', ...(holder ? { lockHeldBy: holder } : {}) };
  }
  const lock = await acquireLock(s3, {
    bucket: env.RUNS_BUCKET,
    key: lockKey,
    owner: execution.arn,
    executionName: execution.name,
    target: configured.name,
    leaseSeconds: LOCK_LEASE_SECONDS,
  });
  await announceRollback(sns, env.TOPIC_ARN, plan, execution);
  await announceRollbackPhase(phaseBus(clients.events, env.EVENT_BUS_NAME), plan, execution);
  return { ...plan, lock };
};

/** `Replacement Started`, as a replacement announces itself, with `action` telling the two apart. */
const announceRollbackPhase = (bus: PhaseBus | undefined, plan: Plan, execution: ExecutionContext) =>
  putPhaseEvent(bus, 'started', {
    target: plan.target.name,
    execution: execution.name,
    summary: `rolling back from ${plan.old.instanceId} to the retired ${plan.restore?.instanceId}`,
    action: 'rollback',
    oldInstanceId: plan.old.instanceId,
    ...(plan.restore ? { restoreInstanceId: plan.restore.instanceId, imageId: plan.restore.imageId } : {}),
    ...(plan.reason ? { reason: plan.reason } : {}),
  });

const announceRollback = (sns: SNSClient, topicArn: string, plan: Plan, execution: ExecutionContext) =>
  publishQuietly(
    sns,
    topicArn,
    {
      kind: 'progress',
      event: 'started',
      target: plan.target.name,
      execution: execution.name,
      summary: `rolling back from ${plan.old.instanceId} to the retired ${plan.restore?.instanceId} (window until ${plan.restore?.retireAfter})`,
      details: {
        oldInstanceId: plan.old.instanceId,
        restoreInstanceId: plan.restore?.instanceId,
        retireAfter: plan.restore?.retireAfter,
        ...(plan.reason ? { reason: plan.reason } : {}),
      },
    },
    'the rollback start notification',
  );
