import type { EC2Client } from '@aws-sdk/client-ec2';
import type { SFNClient } from '@aws-sdk/client-sfn';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { formatIssues } from '../shared/config';
import { parameterNames, Tags } from '../shared/constants';
import { describeInstanceById } from '../shared/ec2';
import { correlate, logger } from '../shared/logger';
import { AgentEventSchema } from '../shared/schemas';
import {
  completeTask,
  decide,
  type FinalDetailType,
  heartbeat,
  readTokenRecord,
  type TokenRecord,
  writeEarlyEvent,
} from './callback';
import { type IdentityTrust, verifyIdentity } from './identity';

export type SignalAction = 'succeeded' | 'failed' | 'heartbeat' | 'kept' | 'ignored' | 'rejected';

export interface SignalClients {
  readonly ssm: SSMClient;
  readonly sfn: SFNClient;
  readonly ec2: EC2Client;
}

export interface SignalSettings {
  readonly parameterPrefix: string;
  /** The keys a final event's identity document must be signed with, by Region. */
  readonly trust: IdentityTrust;
}

/**
 * Whether the instance is a candidate Understudy launched and has not yet judged: launch tags it
 * `understudy:role=candidate` when it creates it, and rollback or retire retag it.
 */
const isCandidate = async (ec2: EC2Client, instanceId: string): Promise<boolean> => {
  const instance = await describeInstanceById(ec2, instanceId);
  const role = instance?.Tags?.find((tag) => tag.Key === Tags.role)?.Value;
  const state = instance?.State?.Name;
  return role === 'candidate' && state !== 'terminated' && state !== 'shutting-down';
};

/**
 * Turns one readiness-agent event into a task completion or heartbeat. Anything else that reaches the
 * function (a malformed or foreign event) is logged and dropped: EventBridge would only retry it.
 */
export const signal = async (
  clients: SignalClients,
  settings: SignalSettings,
  event: unknown,
): Promise<{ action: SignalAction }> => {
  const parsed = AgentEventSchema.safeParse(event);
  if (!parsed.success) {
    logger.warn('ignored an event that is not a readiness-agent event', {
      problems: formatIssues(parsed.error, 'event'),
    });
    return { action: 'ignored' };
  }
  const { identity, ...detail } = parsed.data.detail;
  const detailType = parsed.data['detail-type'];
  correlate({ instance: detail.instanceId });
  const names = parameterNames(settings.parameterPrefix);
  const tokenName = names.token(detail.instanceId);

  // A final event completes the task, so it must come from the box it names: any instance allowed to
  // put events on the bus could otherwise report a broken candidate ready. Checked before anything is
  // read or written. Progress events carry no identity and are not checked: a heartbeat only extends
  // the heartbeat window, never the task's own timeout, and cannot complete anything.
  if (detailType !== 'Instance Progress') {
    const verdict = verifyIdentity(
      identity,
      { instanceId: detail.instanceId, accountId: parsed.data.account, region: parsed.data.region },
      settings.trust,
    );
    if (!verdict.ok) {
      logger.warn('rejected a readiness event whose instance identity does not check out', {
        detailType,
        reason: verdict.reason,
      });
      return { action: 'rejected' };
    }
  }

  const record = await readTokenRecord(clients.ssm, tokenName);

  if (detailType === 'Instance Progress') {
    // Without a token there is no task to keep alive yet; the next progress event will try again.
    if (!record) {
      logger.debug('progress event before the task token; nothing to keep alive yet');
      return { action: 'ignored' };
    }
    const sent = await heartbeat(clients.sfn, record.token);
    return { action: sent === 'sent' ? 'heartbeat' : 'ignored' };
  }

  const final: FinalDetailType = detailType;
  const receivedAt = new Date().toISOString();
  /** Completes the task under the policy the token record carries; a task already closed is ignored. */
  const complete = async (found: TokenRecord): Promise<{ action: SignalAction }> => {
    const result = await completeTask(
      clients.sfn,
      found.token,
      decide(final, detail, found.onRecoverableErrors, receivedAt),
    );
    return { action: result === 'closed' ? 'ignored' : result };
  };
  if (record) return complete(record);

  // Only a candidate's event is worth keeping: any other instance running the agent (the old box
  // started again by a rollback, a box launched by hand from the golden image) would leave a parameter
  // nobody reads or deletes.
  if (!(await isCandidate(clients.ec2, detail.instanceId))) {
    logger.info('ignored a final event from an instance that is not a candidate', { detailType: final });
    return { action: 'ignored' };
  }

  // The agent can finish before await-readiness stored the token. Keep the event for it, then look for
  // the token once more: if it was stored meanwhile, await-readiness may already have missed our event.
  await writeEarlyEvent(clients.ssm, names.earlyEvent(detail.instanceId), {
    detailType: final,
    detail,
    receivedAt,
  });
  const late = await readTokenRecord(clients.ssm, tokenName);
  if (late) return complete(late);
  logger.info('kept the readiness event until the task token is stored', { detailType: final });
  return { action: 'kept' };
};
