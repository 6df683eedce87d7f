import { type EC2Client, StartInstancesCommand } from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SchedulerClient } from '@aws-sdk/client-scheduler';
import type { z } from 'zod';
import { awsCall, describeAwsError, failAs, hasCode } from '../shared/aws-errors';
import { Tags } from '../shared/constants';
import { describeInstanceById } from '../shared/ec2';
import { ErrorNames, failure, UnderstudyError } from '../shared/errors';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { cancelTermination, type RetirementEnv } from '../shared/retirement';
import { type LaunchResult, RollbackRunStateSchema } from '../shared/schemas';

/**
 * Start retired (rollback within the window, design §2.10): cancels the end-of-window schedule of the
 * retired box first, so it cannot fire while the box is being brought back, then starts it. The box
 * keeps role=retired until Retire relabels it serving: should the rollback fail, it simply goes back
 * to sleep with its window. The result takes the candidate's place (`$.launch`), so Switch, Probe,
 * Reconcile and Retire work on it unchanged.
 */

export const StartRetiredEventSchema = RollbackRunStateSchema;
export type StartRetiredEvent = z.infer<typeof StartRetiredEventSchema>;

export interface StartRetiredClients {
  readonly ec2: EC2Client;
  readonly s3: S3Client;
  readonly scheduler: SchedulerClient;
}

const notReady = failure(ErrorNames.InstanceNotReady);
const lost = failure(ErrorNames.InstanceLost);

export const startRetired = (
  clients: StartRetiredClients,
  env: RetirementEnv,
  state: StartRetiredEvent,
): Promise<LaunchResult> =>
  run(clients, env, state).catch(
    failAs(ErrorNames.InstanceLost, `starting the retired server ${state.run.restore.instanceId}`),
  );

const run = async (
  clients: StartRetiredClients,
  env: RetirementEnv,
  state: StartRetiredEvent,
): Promise<LaunchResult> => {
  const { ec2, s3, scheduler } = clients;
  const id = state.run.restore.instanceId;
  const target = state.run.target.name;
  correlate({ target, execution: state.execution.name, instance: id });
  await renewHeldLock(s3, state.run.lock);

  const instance = await describeInstanceById(ec2, id);
  if (!instance) throw lost(`the retired server ${id} no longer exists`);
  const tags = new Map((instance.Tags ?? []).map((t) => [t.Key, t.Value]));
  if (tags.get(Tags.target) !== target || tags.get(Tags.role) !== 'retired') {
    throw new UnderstudyError(
      ErrorNames.PreflightRefused,
      `${id} is no longer the retired server of target ${target} (${Tags.role}=${tags.get(Tags.role) ?? 'none'}); nothing was started`,
    );
  }
  const current = instance.State?.Name ?? 'unknown';
  if (current === 'terminated' || current === 'shutting-down') {
    throw lost(`the retired server ${id} is ${current}: its window closed during the rollback`);
  }

  await cancelTermination(scheduler, env, target, id);
  // A box still stopping cannot be started yet; the state machine's InstanceNotReady retry is the wait.
  if (current === 'stopping') throw notReady(`the retired server ${id} is still stopping`);
  if (current === 'stopped') {
    await awsCall(
      'StartInstances',
      () => ec2.send(new StartInstancesCommand({ InstanceIds: [id] })),
      (error) =>
        hasCode(error, 'IncorrectInstanceState')
          ? notReady(`the retired server ${id} cannot start yet: ${describeAwsError(error)}`, error)
          : hasCode(error, 'InsufficientInstanceCapacity')
            ? lost(`the retired server ${id} cannot start: ${describeAwsError(error)}`, error)
            : undefined,
    );
    logger.info('started the retired server');
  }
  return {
    instanceId: id,
    // Nothing is launched: the field keeps the candidate's shape, and names what took its place.
    clientToken: `restore-${id}`,
    launchedAt: new Date().toISOString(),
    ...(instance.PrivateIpAddress ? { privateIpAddress: instance.PrivateIpAddress } : {}),
  };
};
