import {
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  type SFNClient,
} from '@aws-sdk/client-sfn';
import { GetParameterCommand, PutParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { errorCode, hasCode, isTransient } from '../shared/aws-errors';
import { ErrorNames, UnderstudyError } from '../shared/errors';
import { logger } from '../shared/logger';
import { AgentEventDetailSchema } from '../shared/schemas';

/**
 * The readiness hand-off shared by the signal function and await-readiness. Either side may arrive
 * first: await-readiness stores the task token, the signal stores an early event; each writes its own
 * record and then reads the other's, so whichever comes second completes the task. If both see both,
 * the second completion gets TaskTimedOut, which is harmless.
 *
 * Task tokens are credentials for the execution: they are never logged, never put in an error message
 * (SDK error messages may quote them, so only error names are kept) and never written anywhere but the
 * SecureString parameter.
 */

export const RecoverablePolicySchema = z.enum(['fail', 'accept']);
export type RecoverablePolicy = z.infer<typeof RecoverablePolicySchema>;

/** Value of the SecureString token parameter. The signal has no target config, so the policy travels here. */
export const TokenRecordSchema = z.object({
  token: z.string().min(1),
  onRecoverableErrors: RecoverablePolicySchema,
});
export type TokenRecord = z.infer<typeof TokenRecordSchema>;

export const FinalDetailTypeSchema = z.enum(['Instance Ready', 'Instance Failed']);
export type FinalDetailType = z.infer<typeof FinalDetailTypeSchema>;
export type AgentDetail = z.infer<typeof AgentEventDetailSchema>;

/** Value of the early-event parameter: the detail plus which of the two final events it was. */
export const EarlyEventSchema = z.object({
  detailType: FinalDetailTypeSchema,
  detail: AgentEventDetailSchema,
  /** When the signal function received it: the candidate was ready then, not when the token came. */
  receivedAt: z.iso.datetime().optional(),
});
export type EarlyEvent = z.infer<typeof EarlyEventSchema>;

/** Standard-tier parameters hold 4 KB; a longer value would need the (charged) Advanced tier. */
const PARAMETER_VALUE_LIMIT = 4_096;
/** SendTaskFailure's limit on `cause`. */
const CAUSE_LIMIT = 32_768;
/** cloud-init exit code for "finished with recoverable errors". */
const RECOVERABLE_EXIT = 2;

/** The readiness task's result (`$.readiness`); `readyAt` dates the agent's final event for the timeline. */
export const ReadinessResultSchema = z.object({
  status: z.string(),
  exitCode: z.number(),
  errors: z.array(z.string()),
  readyAt: z.iso.datetime(),
});
export type ReadinessResult = z.infer<typeof ReadinessResultSchema>;

export type Completion =
  | { readonly kind: 'success'; readonly output: ReadinessResult }
  | { readonly kind: 'failure'; readonly cause: string };

/**
 * What the agent's final event means for the task, under the target's policy for exit code 2.
 * `receivedAt` is when the signal function received the event.
 */
export const decide = (
  detailType: FinalDetailType,
  detail: AgentDetail,
  policy: RecoverablePolicy,
  receivedAt: string,
): Completion => {
  const exitCode = detail.exitCode ?? (detailType === 'Instance Ready' ? 0 : 1);
  const status = detail.status ?? (detailType === 'Instance Ready' ? 'done' : 'error');
  const success: Completion = {
    kind: 'success',
    output: { status, exitCode, errors: detail.errors, readyAt: receivedAt },
  };
  const failure = (why: string): Completion => ({
    kind: 'failure',
    cause:
      `${why} on ${detail.instanceId} (cloud-init status ${status}, exit ${exitCode})${detail.errors.length ? `:\n${detail.errors.join('\n')}` : ''}`.slice(
        0,
        CAUSE_LIMIT,
      ),
  });
  if (exitCode === RECOVERABLE_EXIT) {
    return policy === 'accept'
      ? success
      : failure('cloud-init finished with recoverable errors and readiness.onRecoverableErrors is "fail"');
  }
  if (detailType === 'Instance Ready' && exitCode === 0) return success;
  return failure('cloud-init failed');
};

const isGone = (error: unknown): boolean =>
  hasCode(error, 'TaskTimedOut', 'InvalidToken', 'TaskDoesNotExist');

/**
 * An error safe to surface: the code only, no SDK message and no cause, since either may quote the
 * token. Transient failures keep their name so the state machine (or EventBridge) retries them.
 */
const sanitized = (what: string, error: unknown): UnderstudyError => {
  const code = errorCode(error) ?? 'an unknown error';
  if (isTransient(error)) {
    return new UnderstudyError(ErrorNames.Transient, `${what}: ${code} (temporary AWS failure, retried)`);
  }
  return new UnderstudyError(ErrorNames.ReadinessFailed, `${what} failed with ${code}`);
};

/**
 * Completes the task. Returns 'closed' when Step Functions says the task is no longer open (completed
 * by the other side, timed out, or a stale token): a repeat is not an error.
 */
export const completeTask = async (
  sfn: SFNClient,
  token: string,
  completion: Completion,
): Promise<'succeeded' | 'failed' | 'closed'> => {
  try {
    if (completion.kind === 'success') {
      await sfn.send(
        new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(completion.output) }),
      );
      return 'succeeded';
    }
    await sfn.send(
      new SendTaskFailureCommand({
        taskToken: token,
        error: ErrorNames.ReadinessFailed,
        cause: completion.cause,
      }),
    );
    return 'failed';
  } catch (error) {
    if (isGone(error)) {
      logger.info('readiness task already closed; nothing to do', { error: errorCode(error) });
      return 'closed';
    }
    throw sanitized(completion.kind === 'success' ? 'SendTaskSuccess' : 'SendTaskFailure', error);
  }
};

export const heartbeat = async (sfn: SFNClient, token: string): Promise<'sent' | 'closed'> => {
  try {
    await sfn.send(new SendTaskHeartbeatCommand({ taskToken: token }));
    return 'sent';
  } catch (error) {
    if (isGone(error)) {
      logger.info('readiness task already closed; heartbeat dropped', { error: errorCode(error) });
      return 'closed';
    }
    throw sanitized('SendTaskHeartbeat', error);
  }
};

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/**
 * A JSON parameter in the shape `schema` describes, or undefined when it is absent or malformed (a
 * malformed record is logged and treated as absent: the other side writes it again).
 */
export const readJsonParameter = async <S extends z.ZodType>(
  ssm: SSMClient,
  name: string,
  schema: S,
  options: { readonly decrypt: boolean },
): Promise<z.infer<S> | undefined> => {
  let value: string | undefined;
  try {
    const out = await ssm.send(new GetParameterCommand({ Name: name, WithDecryption: options.decrypt }));
    value = out.Parameter?.Value;
  } catch (error) {
    if (hasCode(error, 'ParameterNotFound')) return undefined;
    throw sanitized(`GetParameter ${name}`, error);
  }
  if (value === undefined) return undefined;
  const parsed = schema.safeParse(parseJson(value));
  if (!parsed.success) {
    logger.warn('parameter is not in the expected shape; treating it as absent', { parameter: name });
    return undefined;
  }
  return parsed.data;
};

/** Writes (or overwrites) a parameter; a failure is reported by its code only. */
export const putParameter = async (
  ssm: SSMClient,
  name: string,
  type: 'String' | 'SecureString',
  value: string,
): Promise<void> => {
  try {
    await ssm.send(new PutParameterCommand({ Name: name, Type: type, Value: value, Overwrite: true }));
  } catch (error) {
    throw sanitized(`PutParameter ${name}`, error);
  }
};

export const readTokenRecord = (ssm: SSMClient, name: string): Promise<TokenRecord | undefined> =>
  readJsonParameter(ssm, name, TokenRecordSchema, { decrypt: true });

export const writeTokenRecord = (ssm: SSMClient, name: string, record: TokenRecord): Promise<void> =>
  putParameter(ssm, name, 'SecureString', JSON.stringify(record));

export const readEarlyEvent = (ssm: SSMClient, name: string): Promise<EarlyEvent | undefined> =>
  readJsonParameter(ssm, name, EarlyEventSchema, { decrypt: false });

/**
 * Serialises the event within the parameter size limit: cloud-init can report many long errors, and
 * the first lines are the ones that explain the failure, so the tail is dropped.
 */
export const earlyEventValue = (event: EarlyEvent): string => {
  const errors = [...event.detail.errors];
  const render = () =>
    JSON.stringify({
      detailType: event.detailType,
      detail: { ...event.detail, errors },
      ...(event.receivedAt ? { receivedAt: event.receivedAt } : {}),
    });
  let value = render();
  while (Buffer.byteLength(value) > PARAMETER_VALUE_LIMIT && errors.length > 0) {
    const last = errors.length - 1;
    const line = errors[last] ?? '';
    const excess = Buffer.byteLength(value) - PARAMETER_VALUE_LIMIT;
    if (line.length > excess + 20) errors[last] = `${line.slice(0, line.length - excess - 20)}… (truncated)`;
    else errors.pop();
    value = render();
  }
  return value;
};

export const writeEarlyEvent = (ssm: SSMClient, name: string, event: EarlyEvent): Promise<void> =>
  putParameter(ssm, name, 'String', earlyEventValue(event));
