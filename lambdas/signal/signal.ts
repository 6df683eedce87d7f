import type { SFNClient } from '@aws-sdk/client-sfn';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { formatIssues } from '../shared/config';
import { parameterNames } from '../shared/constants';
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

export type SignalAction = 'succeeded' | 'failed' | 'heartbeat' | 'kept' | 'ignored';

export interface SignalClients {
  readonly ssm: SSMClient;
  readonly sfn: SFNClient;
}

/**
 * Turns one readiness-agent event into a task completion or heartbeat. Anything else that reaches the
 * function (a malformed or foreign event) is logged and dropped: EventBridge would only retry it.
 */
export const signal = async (
  clients: SignalClients,
  parameterPrefix: string,
  event: unknown,
): Promise<{ action: SignalAction }> => {
  const parsed = AgentEventSchema.safeParse(event);
  if (!parsed.success) {
    logger.warn('ignored an event that is not a readiness-agent event', {
      problems: formatIssues(parsed.error, 'event'),
    });
    return { action: 'ignored' };
  }
  const { detail } = parsed.data;
  const detailType = parsed.data['detail-type'];
  correlate({ instance: detail.instanceId });
  const names = parameterNames(parameterPrefix);
  const tokenName = names.token(detail.instanceId);

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
  /** Completes the task under the policy the token record carries; a task already closed is ignored. */
  const complete = async (found: TokenRecord): Promise<{ action: SignalAction }> => {
    const result = await completeTask(
      clients.sfn,
      found.token,
      decide(final, detail, found.onRecoverableErrors),
    );
    return { action: result === 'closed' ? 'ignored' : result };
  };
  if (record) return complete(record);

  // The agent can finish before await-readiness stored the token. Keep the event for it, then look for
  // the token once more: if it was stored meanwhile, await-readiness may already have missed our event.
  await writeEarlyEvent(clients.ssm, names.earlyEvent(detail.instanceId), { detailType: final, detail });
  const late = await readTokenRecord(clients.ssm, tokenName);
  if (late) return complete(late);
  logger.info('kept the readiness event until the task token is stored', { detailType: final });
  return { action: 'kept' };
};
