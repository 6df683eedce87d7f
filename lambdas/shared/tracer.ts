import { Tracer } from '@aws-lambda-powertools/tracer';

/**
 * One X-Ray tracer for every function, built once per process like the logger. Outside Lambda (the CLI,
 * the sandbox, tests) Powertools leaves it disabled, and POWERTOOLS_TRACE_ENABLED=false says so explicitly.
 *
 * Responses are never recorded as metadata: a step's output can carry a task token or a presigned URL.
 * The stack sets POWERTOOLS_TRACER_CAPTURE_RESPONSE=false and the handler middleware also opts out, so
 * neither alone has to be right. AWS SDK subsegments record only X-Ray's allow-listed request ids.
 *
 * The service name is the logger's, written out rather than imported from metrics.ts: every module a
 * step's bundle pulls in is scanned for the calls its role must grant (test/lib/step-permissions.test.ts).
 */
export const tracer = new Tracer({ serviceName: 'understudy' });

/** The correlation keys as they are named in traces (X-Ray keys allow letters, digits and underscores). */
export interface TraceKeys {
  readonly target?: string;
  readonly execution?: string;
  readonly instance?: string;
}

/**
 * Adds the run's ids as annotations of the handler's subsegment, so traces can be filtered by target,
 * execution or instance (`annotation.target = "web"`). Ids only: annotations are indexed and kept.
 */
export const annotate = (keys: TraceKeys): void => {
  if (!tracer.isTracingEnabled()) return;
  for (const [key, value] of Object.entries(keys)) {
    if (typeof value === 'string') tracer.putAnnotation(key, value);
  }
};
