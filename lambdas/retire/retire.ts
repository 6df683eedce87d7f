import { CreateTagsCommand, type EC2Client, StopInstancesCommand } from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import { awsCall, describeAwsError, failAs, hasCode } from '../shared/aws-errors';
import { Tags } from '../shared/constants';
import { describeInstanceById, instanceAttribute } from '../shared/ec2';
import { ErrorNames } from '../shared/errors';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { publishQuietly } from '../shared/notify';
import type { RunState } from '../shared/schemas';

/**
 * Retire: the old server is stopped, not terminated, and labelled with the end of its rollback window;
 * terminating it after the window is another component's job. A server that cannot be stopped here
 * (stop protection) is left running with a warning: the replacement itself already succeeded.
 * The new box is relabelled `serving`: the permissions that park a failed candidate are scoped to
 * role=candidate, and must never reach the box that now carries the site.
 */

export interface RetireClients {
  readonly ec2: EC2Client;
  readonly s3: S3Client;
  readonly sns: SNSClient;
}

export interface RetireEnv {
  readonly TOPIC_ARN: string;
}

export interface RetireResult {
  readonly oldInstanceId: string;
  /** True when the old server is stopping or stopped. */
  readonly stopped: boolean;
  readonly retireAfter: string;
  readonly note?: string;
}

export const retire = (clients: RetireClients, env: RetireEnv, state: RunState): Promise<RetireResult> =>
  runRetire(clients, env, state).catch(
    failAs(ErrorNames.RetireFailed, `retiring ${state.run.old.instanceId}`),
  );

const runRetire = async (clients: RetireClients, env: RetireEnv, state: RunState): Promise<RetireResult> => {
  const { ec2, s3, sns } = clients;
  const plan = state.run;
  const id = plan.old.instanceId;
  correlate({ target: plan.target.name, execution: state.execution.name, instance: id });
  await renewHeldLock(s3, plan.lock);

  const serving = state.launch?.instanceId;
  if (serving) {
    await awsCall('CreateTags', () =>
      ec2.send(new CreateTagsCommand({ Resources: [serving], Tags: [{ Key: Tags.role, Value: 'serving' }] })),
    );
  }

  const retireAfter = new Date(Date.now() + plan.target.rollback.windowHours * 3_600_000).toISOString();
  const instance = await describeInstanceById(ec2, id);
  if (!instance) {
    return { oldInstanceId: id, stopped: false, retireAfter, note: `old server ${id} no longer exists` };
  }
  const current = instance.State?.Name ?? 'unknown';

  let stopped = current === 'stopping' || current === 'stopped';
  let note: string | undefined;
  if (current === 'terminated' || current === 'shutting-down') {
    note = `old server ${id} is already ${current}`;
  } else if (!stopped) {
    const protection = await instanceAttribute(ec2, id, 'disableApiStop');
    if (protection.DisableApiStop?.Value === true) {
      note = `old server ${id} has stop protection (disableApiStop) and was left running; stop it by hand before ${retireAfter}`;
    } else {
      try {
        await awsCall('StopInstances', () => ec2.send(new StopInstancesCommand({ InstanceIds: [id] })));
        stopped = true;
      } catch (error) {
        if (!hasCode(error, 'OperationNotPermitted', 'UnsupportedOperation')) throw error;
        note = `old server ${id} could not be stopped (${describeAwsError(error)}) and was left running`;
      }
    }
  }

  if (current !== 'terminated') {
    await awsCall('CreateTags', () =>
      ec2.send(
        new CreateTagsCommand({
          Resources: [id],
          Tags: [
            { Key: Tags.role, Value: 'retired' },
            { Key: Tags.retireAfter, Value: retireAfter },
          ],
        }),
      ),
    );
  }

  if (note) {
    logger.warn('old server not stopped', { note });
    await publishQuietly(
      sns,
      env.TOPIC_ARN,
      {
        kind: 'warning',
        event: 'old-server-running',
        target: plan.target.name,
        execution: state.execution.name,
        summary: note,
        details: { oldInstanceId: id, retireAfter },
      },
      'the retire warning',
    );
  }
  return { oldInstanceId: id, stopped, retireAfter, ...(note ? { note } : {}) };
};
