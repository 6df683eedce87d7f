import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { describeAwsError } from './aws-errors';
import { logger } from './logger';

/**
 * Notifications on the Understudy topic. Exactly one `outcome` message per run (composed by Finish,
 * published by the state machine's AnnounceOutcome state); everything else is `progress` or `warning`.
 * `kind`, `event`, `target` and `execution` travel as message attributes so subscribers can filter
 * without parsing the body.
 */
export type NotificationKind = 'outcome' | 'progress' | 'warning';
export type Outcome = 'replaced' | 'rolled-back' | 'failed' | 'manual-action-needed' | 'no-op' | 'dry-run';

export interface Notification {
  readonly kind: NotificationKind;
  /** Short machine name of what happened: `started`, `switched`, `rolled-back`, ... */
  readonly event: string;
  readonly target: string;
  readonly execution: string;
  /** One line a human reads first. */
  readonly summary: string;
  readonly details?: Record<string, unknown>;
}

const SUBJECT_LIMIT = 100;

/**
 * A message as SNS's Publish takes it (the API's own member names), so the outcome can be handed to the
 * state machine's `sns:publish` task unchanged.
 */
export interface ComposedMessage {
  readonly Subject: string;
  readonly Message: string;
  readonly MessageAttributes: Record<string, { DataType: 'String'; StringValue: string }>;
}

export const composeMessage = (note: Notification): ComposedMessage => ({
  Subject: `[understudy] ${note.target}: ${note.event}`.slice(0, SUBJECT_LIMIT),
  Message: JSON.stringify(
    {
      kind: note.kind,
      event: note.event,
      target: note.target,
      execution: note.execution,
      summary: note.summary,
      ...note.details,
    },
    null,
    2,
  ),
  MessageAttributes: {
    kind: { DataType: 'String', StringValue: note.kind },
    event: { DataType: 'String', StringValue: note.event },
    target: { DataType: 'String', StringValue: note.target },
    execution: { DataType: 'String', StringValue: note.execution },
  },
});

export const publish = async (sns: SNSClient, topicArn: string, note: Notification): Promise<void> => {
  await sns.send(new PublishCommand({ TopicArn: topicArn, ...composeMessage(note) }));
};

/**
 * Publishes a progress or warning message that must not decide the run: the step's work is done (or
 * its own outcome is already known), so a lost message is logged and the step carries on.
 *
 * @example await publishQuietly(sns, topicArn, note, 'the switch notification');
 */
export const publishQuietly = async (
  sns: SNSClient,
  topicArn: string,
  note: Notification,
  logContext: string,
): Promise<void> => {
  try {
    await publish(sns, topicArn, note);
  } catch (error) {
    logger.warn(`could not publish ${logContext}`, { event: note.event, error: describeAwsError(error) });
  }
};
