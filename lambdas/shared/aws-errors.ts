import { type ErrorName, ErrorNames, isUnderstudyError, UnderstudyError } from './errors';

/**
 * Maps AWS SDK failures onto the workflow's error names. The SDK already retries throttling and 5xx
 * answers inside one invocation (adaptive mode, see clients.ts); what still escapes is surfaced as
 * `Transient` so the state machine's Retry gives it a longer, jittered second chance, instead of the
 * run going to rollback over a busy API.
 */

const TRANSIENT_NAMES: ReadonlySet<string> = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'InternalError',
  'InternalFailure',
  'InternalServerError',
  'InternalServerException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'Unavailable',
  'RequestTimeout',
  'RequestTimeoutException',
  // Node socket failures surface under these names when the SDK gives up.
  'TimeoutError',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
]);

interface SdkErrorShape {
  readonly name?: unknown;
  readonly message?: unknown;
  readonly code?: unknown;
  readonly $metadata?: { readonly httpStatusCode?: number };
}

/** The AWS error code of an SDK failure (`InvalidInstanceID.NotFound`, `ThrottlingException`, ...). */
export const errorCode = (error: unknown): string | undefined => {
  if (typeof error !== 'object' || error === null) return undefined;
  const shape = error as SdkErrorShape;
  if (typeof shape.name === 'string' && shape.name !== 'Error') return shape.name;
  return typeof shape.code === 'string' ? shape.code : undefined;
};

/** True when the failure carries one of `codes` (exact AWS error codes). */
export const hasCode = (error: unknown, ...codes: readonly string[]): boolean => {
  const code = errorCode(error);
  return code !== undefined && codes.includes(code);
};

const statusOf = (error: unknown): number | undefined =>
  typeof error === 'object' && error !== null
    ? (error as SdkErrorShape).$metadata?.httpStatusCode
    : undefined;

export const isTransient = (error: unknown): boolean => {
  if (typeof error !== 'object' || error === null) return false;
  const code = errorCode(error);
  // Our own Transient errors pass through unchanged.
  if (code === ErrorNames.Transient) return false;
  if (code !== undefined && TRANSIENT_NAMES.has(code)) return true;
  const status = statusOf(error);
  return status !== undefined && status >= 500 && status <= 599;
};

/** An S3 object that is not there: `NoSuchKey` from GetObject, a bare 404 from HEAD-style answers. */
export const isNotFound = (error: unknown): boolean => hasCode(error, 'NoSuchKey') || statusOf(error) === 404;

const messageOf = (error: unknown): string =>
  typeof error === 'object' && error !== null && typeof (error as SdkErrorShape).message === 'string'
    ? ((error as SdkErrorShape).message as string)
    : String(error);

/**
 * Throws `Transient` (keeping the SDK error as `cause`) when `error` is a throttle, a 5xx or a network
 * failure; otherwise returns so the caller can map or rethrow the error itself.
 *
 * @example
 * try { await ec2.send(command); } catch (error) { rethrowIfTransient(error, 'DescribeInstances'); throw error; }
 */
export const rethrowIfTransient = (error: unknown, operation?: string): void => {
  if (!isTransient(error)) return;
  const prefix = operation ? `${operation}: ` : '';
  throw new UnderstudyError(
    ErrorNames.Transient,
    `${prefix}${errorCode(error) ?? 'error'}: ${messageOf(error)} (temporary AWS failure, retried by the state machine)`,
    { cause: error },
  );
};

/** A short `Code: message` line for an SDK failure, for error messages and notifications. */
export const describeAwsError = (error: unknown): string => {
  const code = errorCode(error);
  return code ? `${code}: ${messageOf(error)}` : messageOf(error);
};

/**
 * Runs one AWS call: transient failures become `Transient`; `map` may turn a known error code into
 * the step's own error (return undefined to let the SDK error through unchanged).
 */
export const awsCall = async <T>(
  operation: string,
  run: () => Promise<T>,
  map?: (error: unknown) => Error | undefined,
): Promise<T> => {
  try {
    return await run();
  } catch (error) {
    rethrowIfTransient(error, operation);
    const mapped = map?.(error);
    if (mapped) throw mapped;
    throw error;
  }
};

/**
 * Turns whatever escaped a step (an SDK error nobody mapped, a bug) into the step's own named error,
 * so the state machine and the run record always see a name from ErrorNames. Understudy errors
 * (including Transient) pass through untouched.
 *
 * @example
 * export const launch = (clients, state) => run(clients, state).catch(failAs(ErrorNames.LaunchFailed, 'launch'));
 */
export const failAs =
  (name: ErrorName, context: string) =>
  (error: unknown): never => {
    if (isUnderstudyError(error)) throw error;
    throw new UnderstudyError(name, `${context}: ${describeAwsError(error)}`, { cause: error });
  };
