import { type EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { describeAwsError } from './aws-errors';
import { logger } from './logger';

/**
 * Notifications on the Understudy topic. Exactly one `outcome` message per run (composed by Finish,
 * published by the state machine's AnnounceOutcome state); everything else is `progress` or `warning`.
 * `kind`, `event`, `target` and `execution` travel as message attributes so subscribers can filter
 * without parsing the body.
 *
 * The body is written for the on-call engineer reading an e-mail: plain text first, then, after
 * {@link MACHINE_READABLE_MARKER}, the same facts as one JSON document for scripts. One body serves
 * every protocol, so the state machine's `sns:publish` needs no `MessageStructure`.
 */
export type NotificationKind = 'outcome' | 'progress' | 'warning';
/** `rolled-back-by-request`: a rollback within the window (`action: "rollback"`) brought the retired box back. */
export type Outcome =
  | 'replaced'
  | 'rolled-back'
  | 'rolled-back-by-request'
  | 'failed'
  | 'manual-action-needed'
  | 'no-op'
  | 'dry-run';

export interface Notification {
  readonly kind: NotificationKind;
  /** Short machine name of what happened: `started`, `switched`, `rolled-back`, ... */
  readonly event: string;
  readonly target: string;
  readonly execution: string;
  /** One line a human reads first. */
  readonly summary: string;
  readonly details?: Record<string, unknown>;
  /** The subject, when `<target>: <event>` says too little (the outcome names the boxes). */
  readonly headline?: string;
  /** Paragraphs of plain text after the summary; without them the details are listed one per line. */
  readonly text?: readonly string[];
}

/** SNS refuses a subject of 100 characters or more, or one with line breaks or control characters. */
export const SUBJECT_LIMIT = 99;
/** The line that separates the text from the JSON document in every message body. */
export const MACHINE_READABLE_MARKER = '---- machine-readable (JSON) ----';

/**
 * A message as SNS's Publish takes it (the API's own member names), so the outcome can be handed to the
 * state machine's `sns:publish` task unchanged.
 */
export interface ComposedMessage {
  readonly Subject: string;
  readonly Message: string;
  readonly MessageAttributes: Record<string, { DataType: 'String'; StringValue: string }>;
}

/**
 * One line of printable ASCII: e-mail subjects are ASCII, and SNS rejects line breaks and control
 * characters (a cause copied from an AWS error can carry both).
 */
export const subjectLine = (text: string): string => {
  const flat = text
    .replace(/\s+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim();
  return flat.length > SUBJECT_LIMIT ? `${flat.slice(0, SUBJECT_LIMIT - 3)}...` : flat || 'understudy';
};

const printable = (value: unknown): string | undefined => {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join(', ');
  return JSON.stringify(value);
};

const detailLines = (note: Notification): string[] =>
  Object.entries(note.details ?? {}).flatMap(([key, value]) => {
    const text = printable(value);
    return text === undefined ? [] : [`${key}: ${text}`];
  });

export const composeMessage = (note: Notification): ComposedMessage => {
  const document = {
    kind: note.kind,
    event: note.event,
    target: note.target,
    execution: note.execution,
    summary: note.summary,
    ...note.details,
  };
  const paragraphs = [
    note.summary,
    ...(note.text ?? [detailLines(note).join('\n')]),
    `Target: ${note.target}\nExecution: ${note.execution}`,
  ].filter((p) => p.length > 0);
  return {
    Subject: subjectLine(note.headline ?? `${note.target}: ${note.event.replace(/-/g, ' ')}`),
    Message: `${paragraphs.join('\n\n')}\n\n${MACHINE_READABLE_MARKER}\n${JSON.stringify(document, null, 2)}\n`,
    MessageAttributes: {
      kind: { DataType: 'String', StringValue: note.kind },
      event: { DataType: 'String', StringValue: note.event },
      target: { DataType: 'String', StringValue: note.target },
      execution: { DataType: 'String', StringValue: note.execution },
    },
  };
};

/**
 * The JSON document of a message body, for subscribers that are scripts; undefined for a body that has
 * none. The last marker counts: JSON escapes line breaks, so the document itself cannot hold one on a
 * line of its own, while the text above it (an error cause) might.
 */
export const machineReadable = (message: string): Record<string, unknown> | undefined => {
  const at = message.lastIndexOf(`\n${MACHINE_READABLE_MARKER}\n`);
  if (at < 0) return undefined;
  try {
    const parsed: unknown = JSON.parse(message.slice(at + MACHINE_READABLE_MARKER.length + 2));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
};

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

// ---------------------------------------------------------------------------------------------------
// The outcome message: what the on-call engineer needs to decide whether to act, in one screen.

/** What Finish knows about a run, allow-listed: nothing here may carry a token, user data or a key. */
export interface OutcomeReport {
  readonly target: string;
  readonly outcome: Outcome;
  /** One sentence: what happened. */
  readonly summary: string;
  readonly executionArn: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  /** `rollback`: the "new" box is a retired one started again, not a launch. */
  readonly action?: 'replace' | 'rollback' | 'no-op' | 'dry-run';
  readonly imageId?: string;
  readonly oldInstanceId?: string;
  readonly newInstanceId?: string;
  readonly publicIp?: string;
  /** When the new box was launched; for a rollback, when the retired box was started. */
  readonly launchedAt?: string;
  /** The readiness agent's verdict, when it gave one. */
  readonly readiness?: string;
  /** When the readiness agent reported; for a rollback, when the retired box was found up again. */
  readonly readyAt?: string;
  readonly switchedAt?: string;
  readonly probe?: {
    readonly startedAt?: string;
    readonly phase: string;
    readonly phaseStartedAt?: string;
    readonly requests: number;
    readonly failures: number;
  };
  readonly rollback?: { readonly eipInstanceId?: string; readonly serviceHealthy?: boolean };
  readonly retireAfter?: string;
  readonly terraform?: {
    readonly status: string;
    readonly state?: string;
    readonly serialBefore?: string;
    readonly serialAfter?: string;
    readonly backupKey?: string;
  };
  /** Commands a human runs to finish (a rollback that could not complete by itself). */
  readonly commands?: readonly string[];
  readonly warnings?: readonly string[];
  /** The run record's S3 URI. */
  readonly record: string;
}

const arnPart = (arn: string, index: number): string | undefined => arn.split(':')[index];

/** The execution's page in the Step Functions console, in the execution's own region. */
export const executionConsoleLink = (executionArn: string): string => {
  const region = arnPart(executionArn, 3) ?? '';
  return `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${executionArn}`;
};

/** `arn:aws:states:<region>:<account>:execution:<machine>:<name>` → the state machine's ARN. */
export const stateMachineArnOf = (executionArn: string): string => {
  const parts = executionArn.split(':');
  return [...parts.slice(0, 5), 'stateMachine', parts[6] ?? ''].join(':');
};

/** The two ways to flip back: the CLI, and the plain AWS CLI for a machine without Understudy. */
export const rollbackCommands = (target: string, executionArn: string): readonly [string, string] => [
  `npx understudy rollback ${target}`,
  `aws stepfunctions start-execution --region ${arnPart(executionArn, 3) ?? ''} ` +
    `--state-machine-arn ${stateMachineArnOf(executionArn)} ` +
    `--input '${JSON.stringify({ target, action: 'rollback' })}'`,
];

const seconds = (from: string | undefined, to: string | undefined): number | undefined => {
  if (from === undefined || to === undefined) return undefined;
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) && ms >= 0 ? Math.round(ms / 1000) : undefined;
};

export const formatDuration = (total: number): string => {
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
};

const clock = (iso: string | undefined): string => {
  const ms = iso === undefined ? Number.NaN : Date.parse(iso);
  return Number.isFinite(ms) ? new Date(ms).toISOString().slice(11, 19) : '        ';
};

/** The moments Finish can date, in order; a step that records no time is listed without one. */
export const outcomeTimeline = (r: OutcomeReport): { at?: string; what: string }[] => {
  const steps: { at?: string; what: string }[] = [{ at: r.startedAt, what: 'started' }];
  if (r.newInstanceId) {
    steps.push({
      at: r.launchedAt,
      what:
        r.action === 'rollback'
          ? `started the retired ${r.newInstanceId}`
          : `launched ${r.newInstanceId}${r.imageId ? ` from ${r.imageId}` : ''}`,
    });
  }
  if (r.action === 'rollback') {
    // A retired box may have no readiness agent: it counts as up once EC2 and SSM say so.
    if (r.readyAt) {
      steps.push({
        at: r.readyAt,
        what: `${r.newInstanceId ?? 'the retired box'} is up: status checks passed, SSM agent online`,
      });
    }
  } else if (r.readiness) {
    steps.push({ at: r.readyAt, what: `readiness: ${r.readiness}` });
  }
  if (r.switchedAt) {
    steps.push({
      at: r.switchedAt,
      what: `switched${r.publicIp ? ` ${r.publicIp}` : ' the Elastic IP'} from ${r.oldInstanceId ?? '?'} to ${r.newInstanceId ?? '?'}`,
    });
  }
  if (r.probe?.phase === 'bake' && r.probe.phaseStartedAt) {
    steps.push({ at: r.probe.phaseStartedAt, what: 'probe passed; bake period began' });
  }
  if (r.rollback) {
    steps.push({ what: `rolled back: the Elastic IP is on ${r.rollback.eipInstanceId ?? '?'}` });
  }
  steps.push({ at: r.finishedAt, what: `finished: ${r.outcome.replace(/-/g, ' ')}` });
  return steps;
};

/** What the probe saw of the switch: failed requests, and how long until it counted the service healthy. */
export const probeVerdict = (r: OutcomeReport): string | undefined => {
  if (!r.probe) return undefined;
  const { requests, failures } = r.probe;
  const healthyAfter =
    r.probe.phase === 'bake' ? seconds(r.switchedAt ?? r.probe.startedAt, r.probe.phaseStartedAt) : undefined;
  return (
    `${failures === 0 ? 'no failed requests' : `${failures} of ${requests} requests failed`}` +
    `${failures === 0 ? ` (${requests} sent)` : ''}` +
    `${healthyAfter === undefined ? '' : `; healthy ${formatDuration(healthyAfter)} after the switch`}`
  );
};

const OUTCOME_WORDS: Record<Outcome, string> = {
  replaced: 'replaced',
  'rolled-back': 'ROLLED BACK',
  'rolled-back-by-request': 'rolled back on request',
  failed: 'FAILED',
  'manual-action-needed': 'MANUAL ACTION NEEDED',
  'no-op': 'nothing to do',
  'dry-run': 'dry run',
};

/** `<target>: <outcome>` and the boxes involved, so an inbox line tells the story. */
export const outcomeHeadline = (r: OutcomeReport): string => {
  const word = `${r.target}: ${OUTCOME_WORDS[r.outcome]}`;
  switch (r.outcome) {
    case 'replaced':
      return subjectLine(`${word} ${r.oldInstanceId ?? '?'} -> ${r.newInstanceId ?? '?'}`);
    case 'rolled-back':
      return subjectLine(`${word} to ${r.rollback?.eipInstanceId ?? r.oldInstanceId ?? '?'}`);
    default:
      return subjectLine(word);
  }
};

/** The paragraphs of the outcome message after its summary. */
export const outcomeText = (r: OutcomeReport): string[] => {
  const paragraphs: string[] = [];
  const total = seconds(r.startedAt, r.finishedAt);
  const timeline = outcomeTimeline(r).map((s) => {
    const offset = seconds(r.startedAt, s.at);
    const when = `${clock(s.at)} ${offset === undefined ? '' : `+${formatDuration(offset)}`}`;
    return `  ${when.padEnd(18)} ${s.what}`;
  });
  paragraphs.push(
    `Timeline (UTC)${total === undefined ? '' : `, ${formatDuration(total)} in all`}:\n${timeline.join('\n')}`,
  );

  const facts: string[] = [];
  if (r.oldInstanceId) facts.push(`Old instance: ${r.oldInstanceId}`);
  if (r.newInstanceId) facts.push(`New instance: ${r.newInstanceId}`);
  if (r.imageId) facts.push(`Image: ${r.imageId}`);
  const verdict = probeVerdict(r);
  if (verdict) facts.push(`Downtime seen by the probe: ${verdict}`);
  if (r.terraform) {
    const t = r.terraform;
    const serials =
      t.serialBefore || t.serialAfter ? `, serial ${t.serialBefore ?? '?'} -> ${t.serialAfter ?? '?'}` : '';
    facts.push(`Terraform state: ${t.status}${t.state ? ` (${t.state})` : ''}${serials}`);
    if (t.backupKey) facts.push(`Terraform backup: ${t.backupKey}`);
  }
  if (facts.length > 0) paragraphs.push(facts.join('\n'));

  if (r.commands?.length) {
    paragraphs.push(`To finish by hand, run:\n${r.commands.map((c) => `  ${c}`).join('\n')}`);
  }
  if (r.warnings?.length) {
    paragraphs.push(`Warnings:\n${r.warnings.map((w) => `  - ${w}`).join('\n')}`);
  }
  if (r.outcome === 'replaced') {
    const [cli, aws] = rollbackCommands(r.target, r.executionArn);
    paragraphs.push(
      `To roll back${r.retireAfter ? ` (the old box is kept until ${r.retireAfter})` : ''}:\n  ${cli}\nor, without the CLI:\n  ${aws}`,
    );
  }
  paragraphs.push(`Console: ${executionConsoleLink(r.executionArn)}\nRun record: ${r.record}`);
  return paragraphs;
};

// ---------------------------------------------------------------------------------------------------
// Phase events on the Understudy bus, for integrations (chat ops, CMDBs, change calendars).

/**
 * `source` of every phase event. It is the replacement requests' source too, so only the detail-types
 * tell them apart: none of these may ever be `Replacement Requested`, or a run would start runs.
 */
export const PHASE_EVENT_SOURCE = 'understudy';
export const PHASE_DETAIL_TYPES = {
  started: 'Replacement Started',
  switched: 'Replacement Switched',
  'rolled-back': 'Replacement Rolled Back',
  finished: 'Replacement Finished',
} as const;
export type Phase = keyof typeof PHASE_DETAIL_TYPES;

/** Where phase events go; a step without one (a unit test, an older stack) emits none. */
export interface PhaseBus {
  readonly events: EventBridgeClient;
  readonly eventBusName: string;
}

export const phaseBus = (
  events: EventBridgeClient | undefined,
  eventBusName: string | undefined,
): PhaseBus | undefined => (events && eventBusName ? { events, eventBusName } : undefined);

/** What every phase event carries; the rest is the phase's own allow-listed ids. */
export interface PhaseDetail {
  readonly target: string;
  readonly execution: string;
  readonly summary: string;
  readonly [key: string]: unknown;
}

/**
 * Puts one phase event on the bus. Like a progress message it must not decide the run: a refused or
 * lost event is logged and the step carries on. Delivery is at least once (a retried step repeats
 * it): consumers key on `execution` and the detail-type.
 */
export const putPhaseEvent = async (
  bus: PhaseBus | undefined,
  phase: Phase,
  detail: PhaseDetail,
): Promise<void> => {
  if (!bus) return;
  try {
    const result = await bus.events.send(
      new PutEventsCommand({
        Entries: [
          {
            EventBusName: bus.eventBusName,
            Source: PHASE_EVENT_SOURCE,
            DetailType: PHASE_DETAIL_TYPES[phase],
            Detail: JSON.stringify({ phase, ...detail }),
          },
        ],
      }),
    );
    // PutEvents answers 200 with a per-entry error rather than failing the call.
    const failed = result.Entries?.find((e) => e.ErrorCode);
    if ((result.FailedEntryCount ?? 0) > 0 || failed) {
      logger.warn('the bus refused the phase event', {
        phase,
        error: `${failed?.ErrorCode ?? 'unknown'}: ${failed?.ErrorMessage ?? 'no details'}`,
      });
    }
  } catch (error) {
    logger.warn('could not put the phase event', { phase, error: describeAwsError(error) });
  }
};
