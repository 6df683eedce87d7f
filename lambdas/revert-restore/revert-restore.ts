import { type EC2Client, StopInstancesCommand } from '@aws-sdk/client-ec2';
import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SchedulerClient } from '@aws-sdk/client-scheduler';
import type { SNSClient } from '@aws-sdk/client-sns';
import type { z } from 'zod';
import { awsCall, describeAwsError } from '../shared/aws-errors';
import { associateAndConfirm, describeInstanceById, readAddress } from '../shared/ec2';
import { ErrorNames, isUnderstudyError, UnderstudyError } from '../shared/errors';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { phaseBus, publishQuietly, putPhaseEvent } from '../shared/notify';
import { probeUntilHealthy, schemeFor } from '../shared/probe';
import { type RetirementEnv, scheduleTermination } from '../shared/retirement';
import { RollbackRunStateSchema } from '../shared/schemas';
import { shellQuote } from '../shared/shell';

/**
 * Revert restore: a rollback within the window failed on the way. The Elastic IP goes back to the box
 * that served before the request (the run's `old`), verified through the EIP, and the retired box goes
 * back to sleep with its window and its end-of-window schedule, as if nothing had been asked. What it
 * cannot do itself ends as `manual-action-needed` with the exact commands.
 */

export const RevertRestoreEventSchema = RollbackRunStateSchema;
export type RevertRestoreEvent = z.infer<typeof RevertRestoreEventSchema>;

export interface RevertRestoreClients {
  readonly ec2: EC2Client;
  readonly s3: S3Client;
  readonly sns: SNSClient;
  readonly scheduler: SchedulerClient;
  /** For the `Replacement Rolled Back` event on the Understudy bus, as Rollback puts it. */
  readonly events?: EventBridgeClient;
}

export interface RevertRestoreEnv extends RetirementEnv {
  readonly TOPIC_ARN: string;
  readonly EVENT_BUS_NAME?: string;
}

export interface RevertRestoreOptions {
  readonly verifyDeadlineMs?: number;
  readonly verifySuccesses?: number;
}

/** The same shape as Rollback's record, so Finish and the run record read both alike. */
export interface RevertRestoreResult {
  readonly outcome: 'rolled-back' | 'manual-action-needed';
  readonly eipInstanceId?: string;
  readonly serviceHealthy: boolean;
  readonly candidates: { readonly instanceId: string; readonly action: string }[];
  readonly commands: string[];
  readonly summary: string;
}

/** The site through the Elastic IP as a browser asks for it (domain pinned to the address: SNI and Host). */
const siteCheck = (plan: RevertRestoreEvent['run']): string => {
  const scheme = schemeFor(plan.target);
  const port = scheme === 'https' ? 443 : 80;
  return `curl -sS -o /dev/null -w '%{http_code}\\n' --resolve ${shellQuote(`${plan.target.domain}:${port}:${plan.eip.publicIp}`)} ${shellQuote(`${scheme}://${plan.target.domain}${plan.target.health.path}`)}`;
};

/** A schedule must lie in the future; a window that ended during the run gets this much grace. */
const GRACE_MS = 15 * 60_000;

export const revertRestore = async (
  clients: RevertRestoreClients,
  env: RevertRestoreEnv,
  state: RevertRestoreEvent,
  options: RevertRestoreOptions = {},
): Promise<RevertRestoreResult> => {
  const { ec2, s3, sns, scheduler } = clients;
  const plan = state.run;
  const servingId = plan.old.instanceId;
  const restoreId = plan.restore.instanceId;
  correlate({ target: plan.target.name, execution: state.execution.name, instance: restoreId });
  const region = await ec2.config.region();
  const associate = `aws ec2 associate-address --region ${region} --allocation-id ${plan.eip.allocationId} --instance-id ${servingId} --allow-reassociation`;
  try {
    await renewHeldLock(s3, plan.lock).catch((error: unknown) =>
      logger.warn('could not renew the lock while reverting', { error: describeAwsError(error) }),
    );
    const commands: string[] = [];
    const notes: string[] = [];

    let address = await readAddress(ec2, plan.eip.allocationId);
    if (address?.InstanceId !== servingId) {
      const serving = await describeInstanceById(ec2, servingId);
      const servingState = serving?.State?.Name ?? 'gone';
      if (servingState === 'running') {
        ({ address } = await associateAndConfirm(ec2, plan.eip.allocationId, servingId));
        if (address?.InstanceId !== servingId) {
          notes.push(
            `AssociateAddress answered but the Elastic IP is on ${address?.InstanceId ?? 'no instance'}`,
          );
          commands.push(associate);
        }
      } else {
        notes.push(`the server ${servingId} that served before is ${servingState}`);
        commands.push(associate);
      }
    }
    const eipInstanceId = address?.InstanceId;
    const eipBack = eipInstanceId === servingId;

    const candidates: { instanceId: string; action: string }[] = [];
    const restored = await describeInstanceById(ec2, restoreId);
    const restoredState = restored?.State?.Name ?? 'gone';
    if (eipInstanceId === restoreId) {
      candidates.push({ instanceId: restoreId, action: 'kept: holds the Elastic IP' });
      notes.push(
        `${restoreId} holds the Elastic IP and is still tagged retired: no end-of-window termination was scheduled for it; tag it understudy:role=serving once it should stay`,
      );
    } else if (restoredState === 'pending') {
      throw new UnderstudyError(ErrorNames.Transient, `${restoreId} is still pending; retrying the revert`);
    } else if (restoredState === 'running') {
      await awsCall('StopInstances', () => ec2.send(new StopInstancesCommand({ InstanceIds: [restoreId] })));
      candidates.push({ instanceId: restoreId, action: 'stopped' });
    } else {
      candidates.push({ instanceId: restoreId, action: `already ${restoredState}` });
    }
    // Never schedule the end of the window for the box that holds the Elastic IP: it is still tagged
    // retired, so the retirement role could terminate the box serving the site.
    const holdsTraffic = eipInstanceId === restoreId;
    if (
      !holdsTraffic &&
      restoredState !== 'gone' &&
      restoredState !== 'terminated' &&
      restoredState !== 'shutting-down'
    ) {
      const at = new Date(
        Math.max(Date.parse(plan.restore.retireAfter), Date.now() + GRACE_MS),
      ).toISOString();
      await scheduleTermination(scheduler, env, { target: plan.target.name, instanceId: restoreId, at });
    }

    let serviceHealthy = false;
    let health = 'service not verified: the Elastic IP is not on the server that served before';
    if (eipBack) {
      const verdict = await probeUntilHealthy(
        plan.target,
        plan.eip.publicIp,
        options.verifySuccesses ?? 2,
        Date.now() + (options.verifyDeadlineMs ?? 120_000),
      );
      serviceHealthy = verdict.reached;
      health = serviceHealthy
        ? 'service answers healthy through the Elastic IP'
        : `the service does not answer healthy: ${verdict.last.detail}`;
      if (!serviceHealthy && plan.baseline.healthy) commands.push(siteCheck(plan));
    }
    const outcome =
      !eipBack || (plan.baseline.healthy && !serviceHealthy) ? 'manual-action-needed' : 'rolled-back';
    const summary = [
      outcome === 'rolled-back'
        ? `Elastic IP ${plan.eip.publicIp} is still on ${servingId}; the retired ${restoreId} is back in its window`
        : `manual action needed: Elastic IP ${plan.eip.publicIp} is on ${eipInstanceId ?? 'no instance'}`,
      ...notes,
      health,
    ].join('; ');
    const result: RevertRestoreResult = {
      outcome,
      ...(eipInstanceId ? { eipInstanceId } : {}),
      serviceHealthy,
      candidates,
      commands,
      summary,
    };
    await publishQuietly(
      sns,
      env.TOPIC_ARN,
      {
        kind: 'warning',
        event: outcome === 'rolled-back' ? 'rollback-reverted' : 'manual-action-needed',
        target: plan.target.name,
        execution: state.execution.name,
        summary,
        details: { cause: state.error?.Error, eipInstanceId, serviceHealthy, candidates, commands },
      },
      'the revert warning',
    );
    if (result.outcome === 'rolled-back') {
      await putPhaseEvent(phaseBus(clients.events, env.EVENT_BUS_NAME), 'rolled-back', {
        target: plan.target.name,
        execution: state.execution.name,
        summary,
        action: plan.action,
        ...(eipInstanceId ? { eipInstanceId } : {}),
        oldInstanceId: servingId,
        newInstanceId: restoreId,
        serviceHealthy,
      });
    }
    return result;
  } catch (error) {
    if (isUnderstudyError(error, ErrorNames.Transient)) throw error;
    throw new UnderstudyError(
      ErrorNames.RollbackFailed,
      `reverting the rollback of target ${plan.target.name} failed: ${describeAwsError(error)}. To restore by hand: ${associate}`,
      { cause: error },
    );
  }
};
