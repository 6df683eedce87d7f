import { type EC2Client, ModifyInstanceAttributeCommand } from '@aws-sdk/client-ec2';
import type { z } from 'zod';
import { awsCall, failAs } from '../shared/aws-errors';
import { describeInstanceById } from '../shared/ec2';
import { ErrorNames, failure, UnderstudyError } from '../shared/errors';
import { correlate, logger } from '../shared/logger';
import { type LaunchResult, LaunchResultSchema, RunStateSchema } from '../shared/schemas';

/**
 * Await running: one look at the candidate per invocation; the state machine's Retry on
 * InstanceNotReady is the poll loop, so no Lambda sits waiting.
 */

export const AwaitRunningEventSchema = RunStateSchema.extend({ launch: LaunchResultSchema });
export type AwaitRunningEvent = z.infer<typeof AwaitRunningEventSchema>;

export interface AwaitRunningClients {
  readonly ec2: EC2Client;
}

const notReady = failure(ErrorNames.InstanceNotReady);

export const awaitRunning = (clients: AwaitRunningClients, state: AwaitRunningEvent): Promise<LaunchResult> =>
  check(clients, state).catch(
    failAs(ErrorNames.LaunchFailed, `checking candidate ${state.launch.instanceId}`),
  );

const check = async (clients: AwaitRunningClients, state: AwaitRunningEvent): Promise<LaunchResult> => {
  const { ec2 } = clients;
  const id = state.launch.instanceId;
  correlate({ target: state.run.target.name, execution: state.execution.name, instance: id });

  const instance = await describeInstanceById(ec2, id);
  // Right after RunInstances the id may not be visible yet (eventual consistency): keep polling.
  if (!instance) throw notReady(`candidate ${id} is not visible yet`);
  const current = instance.State?.Name;
  if (current === 'pending') throw notReady(`candidate ${id} is pending`);
  if (current !== 'running') {
    const reason = instance.StateReason?.Message ?? instance.StateTransitionReason ?? 'no reason given';
    throw new UnderstudyError(
      ErrorNames.InstanceLost,
      `candidate ${id} is ${current ?? 'in an unknown state'} instead of running: ${reason}`,
    );
  }

  // Source/dest check has no launch parameter (§A3): carry a NAT/router box's setting over now.
  if (state.launch.sourceDestCheck === false && instance.SourceDestCheck !== false) {
    await awsCall('ModifyInstanceAttribute', () =>
      ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, SourceDestCheck: { Value: false } })),
    );
    logger.info('disabled source/destination check on the candidate, as on the old box');
  }

  return {
    ...state.launch,
    ...(instance.PrivateIpAddress ? { privateIpAddress: instance.PrivateIpAddress } : {}),
  };
};
