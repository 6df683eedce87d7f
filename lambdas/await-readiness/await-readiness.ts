import type { S3Client } from '@aws-sdk/client-s3';
import type { SFNClient } from '@aws-sdk/client-sfn';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { parameterNames } from '../shared/constants';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { type CallbackTaskInput, CallbackTaskInputSchema } from '../shared/schemas';
import { completeTask, decide, readEarlyEvent, writeTokenRecord } from '../signal/callback';

export const AwaitReadinessInputSchema = CallbackTaskInputSchema;
export type AwaitReadinessInput = CallbackTaskInput;

export interface AwaitReadinessClients {
  readonly ssm: SSMClient;
  readonly sfn: SFNClient;
  readonly s3: S3Client;
}

/**
 * Parks the task token where the signal function finds it (by instance id), then completes the task
 * itself if the agent's event already arrived. The Task's real result is what the completion sends.
 */
export const awaitReadiness = async (
  clients: AwaitReadinessClients,
  parameterPrefix: string,
  input: AwaitReadinessInput,
): Promise<{ stored: true; completedFromEarlyEvent: boolean }> => {
  const { state } = input;
  const instanceId = state.launch.instanceId;
  correlate({ target: state.run.target.name, execution: state.execution.name, instance: instanceId });
  await renewHeldLock(clients.s3, state.run.lock);

  const names = parameterNames(parameterPrefix);
  const policy = state.run.target.readiness.onRecoverableErrors;
  await writeTokenRecord(clients.ssm, names.token(instanceId), {
    token: input.taskToken,
    onRecoverableErrors: policy,
  });
  logger.debug('stored the readiness task token', { parameter: names.token(instanceId) });

  const early = await readEarlyEvent(clients.ssm, names.earlyEvent(instanceId));
  if (!early) return { stored: true, completedFromEarlyEvent: false };
  const result = await completeTask(
    clients.sfn,
    input.taskToken,
    // An early record written before records carried the time is dated now: the best still known.
    decide(early.detailType, early.detail, policy, early.receivedAt ?? new Date().toISOString()),
  );
  logger.info('completed the readiness task from an event that arrived before the token', { result });
  return { stored: true, completedFromEarlyEvent: result !== 'closed' };
};
