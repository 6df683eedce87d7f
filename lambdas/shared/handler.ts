import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import type { z } from 'zod';
import { formatIssues } from './config';
import { ErrorNames, UnderstudyError } from './errors';
import { logger } from './logger';
import { tracer } from './tracer';

/**
 * Wraps a step's domain function as a Lambda handler: parses the event at the boundary (the error names
 * the field), injects the Lambda context into the logger and resets correlation keys between invocations,
 * and wraps the invocation in an X-Ray subsegment (cold start, errors; never the response).
 * Handlers stay one line: `export const handler = step(Schema, (input) => domain({ ssm: ssmClient() }, input));`
 */
export const step = <S extends z.ZodType, R>(
  schema: S,
  run: (input: z.infer<S>, context: Context) => Promise<R>,
) =>
  middy(async (event: unknown, context: Context): Promise<R> => {
    const parsed = schema.safeParse(event);
    if (!parsed.success) {
      throw new UnderstudyError(ErrorNames.InvalidInput, formatIssues(parsed.error, 'event').join('; '));
    }
    return run(parsed.data, context);
  })
    // First, so the subsegment is open before anything else runs and closed after it.
    .use(captureLambdaHandler(tracer, { captureResponse: false }))
    .use(injectLambdaContext(logger, { resetKeys: true, logEvent: false }));
