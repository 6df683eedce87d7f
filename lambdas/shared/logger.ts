import { Logger } from '@aws-lambda-powertools/logger';
import { annotate } from './tracer';

/**
 * One structured logger for every function. Correlation keys (target, execution, instance) are appended
 * (and annotated on the X-Ray trace) per invocation by the handlers and reset between invocations
 * (`resetKeys` in the middleware).
 * Never log a task token, user data, a presigned URL or a certificate key: pass ids, not payloads.
 */
export const logger = new Logger({ serviceName: 'understudy' });

export const correlate = (keys: { target?: string; execution?: string; instance?: string }): void => {
  const defined = Object.fromEntries(Object.entries(keys).filter(([, v]) => v !== undefined));
  logger.appendKeys(defined);
  // The same ids on the invocation's trace, so a log line and its trace are found by the same keys.
  annotate(keys);
};
