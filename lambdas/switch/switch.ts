import type { EC2Client } from '@aws-sdk/client-ec2';
import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import type { z } from 'zod';
import { describeAwsError, failAs } from '../shared/aws-errors';
import { associateAndConfirm, readAddress } from '../shared/ec2';
import { ErrorNames, failure } from '../shared/errors';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { phaseBus, publishQuietly, putPhaseEvent } from '../shared/notify';
import { LaunchResultSchema, RunStateSchema, type SwitchResult } from '../shared/schemas';

/**
 * Switch: the one moment traffic moves. A single AssociateAddress with AllowReassociation moves the
 * Elastic IP in one step (a disassociate first would open a gap with no server at all), then the move
 * is confirmed by reading the address back rather than trusting the call's answer.
 */

export const SwitchEventSchema = RunStateSchema.extend({ launch: LaunchResultSchema });
export type SwitchEvent = z.infer<typeof SwitchEventSchema>;

export interface SwitchClients {
  readonly ec2: EC2Client;
  readonly s3: S3Client;
  readonly sns: SNSClient;
  /** For the `Replacement Switched` event on the Understudy bus. */
  readonly events?: EventBridgeClient;
}

export interface SwitchEnv {
  readonly TOPIC_ARN: string;
  readonly EVENT_BUS_NAME?: string;
}

export interface SwitchOptions {
  /** Reads of DescribeAddresses after the move before declaring it failed (the API is eventually consistent). */
  readonly confirmAttempts?: number;
  readonly confirmDelayMs?: number;
}

const switchFailed = failure(ErrorNames.SwitchFailed);

export const switchAddress = (
  clients: SwitchClients,
  env: SwitchEnv,
  state: SwitchEvent,
  options: SwitchOptions = {},
): Promise<SwitchResult> =>
  runSwitch(clients, env, state, options).catch(
    failAs(
      ErrorNames.SwitchFailed,
      `moving Elastic IP ${state.run.eip.allocationId} to ${state.launch.instanceId}`,
    ),
  );

const runSwitch = async (
  clients: SwitchClients,
  env: SwitchEnv,
  state: SwitchEvent,
  options: SwitchOptions = {},
): Promise<SwitchResult> => {
  const { ec2, s3, sns } = clients;
  const { allocationId } = state.run.eip;
  const candidate = state.launch.instanceId;
  const oldId = state.run.old.instanceId;
  correlate({ target: state.run.target.name, execution: state.execution.name, instance: candidate });
  await renewHeldLock(s3, state.run.lock);

  const before = await readAddress(ec2, allocationId);
  if (!before) throw switchFailed(`Elastic IP ${allocationId} no longer exists (released?)`);
  if (before.InstanceId === candidate) {
    // A retry after the move succeeded: nothing to do, and no second notification.
    return {
      moved: false,
      ...(before.AssociationId ? { associationId: before.AssociationId } : {}),
      previousInstanceId: oldId,
      ...(state.run.eip.associationId ? { previousAssociationId: state.run.eip.associationId } : {}),
      at: new Date().toISOString(),
    };
  }
  if (before.InstanceId !== undefined && before.InstanceId !== oldId) {
    throw switchFailed(
      `Elastic IP ${allocationId} is on ${before.InstanceId}, neither the old server ${oldId} nor the candidate ${candidate}; someone else moved it, so Understudy will not take it`,
    );
  }

  const { associationId, address: after } = await associateAndConfirm(ec2, allocationId, candidate, {
    ...(options.confirmAttempts !== undefined ? { attempts: options.confirmAttempts } : {}),
    ...(options.confirmDelayMs !== undefined ? { delayMs: options.confirmDelayMs } : {}),
    mapError: (error) =>
      switchFailed(
        `AssociateAddress of ${allocationId} to ${candidate} failed: ${describeAwsError(error)}`,
        error,
      ),
  });
  if (after?.InstanceId !== candidate) {
    throw switchFailed(
      `AssociateAddress answered ${associationId ?? 'no association id'} but Elastic IP ${allocationId} is on ${after?.InstanceId ?? 'no instance'}, not the candidate ${candidate}`,
    );
  }

  const result: SwitchResult = {
    moved: true,
    ...((after.AssociationId ?? associationId)
      ? { associationId: after.AssociationId ?? associationId }
      : {}),
    ...(before.InstanceId ? { previousInstanceId: before.InstanceId } : {}),
    ...(before.AssociationId ? { previousAssociationId: before.AssociationId } : {}),
    at: new Date().toISOString(),
  };
  logger.info('Elastic IP moved to the candidate', { from: before.InstanceId });
  // The move happened; a lost progress message must not send a healthy switch to rollback.
  await publishQuietly(
    sns,
    env.TOPIC_ARN,
    {
      kind: 'progress',
      event: 'switched',
      target: state.run.target.name,
      execution: state.execution.name,
      summary: `${state.run.eip.publicIp} now points at ${candidate} (was ${before.InstanceId ?? 'unassociated'})`,
      details: { allocationId, candidate, previousInstanceId: before.InstanceId, at: result.at },
    },
    'the switch notification',
  );
  await putPhaseEvent(phaseBus(clients.events, env.EVENT_BUS_NAME), 'switched', {
    target: state.run.target.name,
    execution: state.execution.name,
    summary: `${state.run.eip.publicIp} now points at ${candidate}`,
    allocationId,
    newInstanceId: candidate,
    ...(before.InstanceId ? { oldInstanceId: before.InstanceId } : {}),
    at: result.at,
  });
  return result;
};
