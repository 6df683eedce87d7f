import type { S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { type ApprovalRecord, approvalCommands } from '../shared/approval';
import { parameterNames } from '../shared/constants';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { publish } from '../shared/notify';
import { type CallbackTaskInput, CallbackTaskInputSchema } from '../shared/schemas';
import { putParameter } from '../signal/callback';

export const RequestApprovalInputSchema = CallbackTaskInputSchema;
export type RequestApprovalInput = CallbackTaskInput;

export interface RequestApprovalClients {
  readonly ssm: SSMClient;
  readonly sns: SNSClient;
  readonly s3: S3Client;
}

export interface RequestApprovalEnv {
  readonly parameterPrefix: string;
  readonly topicArn: string;
}

/**
 * Parks the approval task token for the CLI and announces that a human must decide. The announcement
 * is not "quiet": nobody would know to answer a gate nobody heard of, so a failed publish fails the
 * step (and the run rolls back with nothing switched) rather than waiting out the timeout.
 */
export const requestApproval = async (
  clients: RequestApprovalClients,
  env: RequestApprovalEnv,
  input: RequestApprovalInput,
): Promise<{ requested: true }> => {
  const { state } = input;
  const target = state.run.target.name;
  const candidate = state.launch.instanceId;
  correlate({ target, execution: state.execution.name, instance: candidate });
  await renewHeldLock(clients.s3, state.run.lock);

  const parameter = parameterNames(env.parameterPrefix).approval(target);
  const record: ApprovalRecord = {
    token: input.taskToken,
    target,
    execution: state.execution.name,
    candidate,
    requestedAt: new Date().toISOString(),
  };
  await putParameter(clients.ssm, parameter, 'SecureString', JSON.stringify(record));
  logger.info('stored the approval task token', { parameter });

  const commands = approvalCommands(target);
  const timeoutSeconds = state.run.target.approval?.timeoutSeconds;
  await publish(clients.sns, env.topicArn, {
    kind: 'progress',
    event: 'approval-needed',
    target,
    execution: state.execution.name,
    summary: `approval needed: ${candidate} is ready to take ${state.run.eip.publicIp} from ${state.run.old.instanceId}`,
    text: [
      `Target ${target}: candidate ${candidate} (image ${state.run.image.imageId}) passed its checks and waits for a go-ahead before the Elastic IP ${state.run.eip.publicIp} moves from ${state.run.old.instanceId}.`,
      `Approve: ${commands.approve}`,
      `Reject:  ${commands.reject}`,
      timeoutSeconds === undefined
        ? 'Unanswered, the run rolls back when its timeout ends.'
        : `Unanswered for ${Math.round(timeoutSeconds / 60)} minutes, the run rolls back; nothing has been switched.`,
    ],
    details: { candidate, oldInstanceId: state.run.old.instanceId, ...commands, timeoutSeconds },
  });
  return { requested: true };
};
