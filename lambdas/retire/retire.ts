import {
  CreateTagsCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  type EC2Client,
  StopInstancesCommand,
} from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import { awsCall, describeAwsError, failAs, hasCode } from '../shared/aws-errors';
import { Tags } from '../shared/constants';
import { ErrorNames } from '../shared/errors';
import { renewLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { publish } from '../shared/notify';
import type { RunState } from '../shared/schemas';

/**
 * Retire: the old server is stopped, not terminated, and labelled with the end of its rollback window;
 * terminating it after the window is another component's job. A server that cannot be stopped here
 * (stop protection) is left running with a warning: the replacement itself already succeeded.
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
  if (plan.lock) await renewLock(s3, plan.lock);

  const retireAfter = new Date(Date.now() + plan.target.rollback.windowHours * 3_600_000).toISOString();
  let instance: Awaited<ReturnType<typeof describe>>;
  try {
    instance = await describe(ec2, id);
  } catch (error) {
    if (!hasCode(error, 'InvalidInstanceID.NotFound')) throw error;
    return { oldInstanceId: id, stopped: false, retireAfter, note: `old server ${id} no longer exists` };
  }
  const current = instance?.State?.Name ?? 'unknown';

  let stopped = current === 'stopping' || current === 'stopped';
  let note: string | undefined;
  if (current === 'terminated' || current === 'shutting-down') {
    note = `old server ${id} is already ${current}`;
  } else if (!stopped) {
    const protection = await awsCall('DescribeInstanceAttribute(disableApiStop)', () =>
      ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: 'disableApiStop' })),
    );
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
    try {
      await publish(sns, env.TOPIC_ARN, {
        kind: 'warning',
        event: 'old-server-running',
        target: plan.target.name,
        execution: state.execution.name,
        summary: note,
        details: { oldInstanceId: id, retireAfter },
      });
    } catch (error) {
      logger.warn('could not publish the retire warning', { error: describeAwsError(error) });
    }
  }
  return { oldInstanceId: id, stopped, retireAfter, ...(note ? { note } : {}) };
};

const describe = async (ec2: EC2Client, id: string) => {
  const out = await awsCall('DescribeInstances', () =>
    ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] })),
  );
  return out.Reservations?.[0]?.Instances?.[0];
};
