import { Metrics } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import { eventsClient, s3Client, snsClient, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { METRICS_NAMESPACE, METRICS_SERVICE } from '../shared/metrics';
import { FinishInputSchema, finish } from './finish';

const env = once(() => {
  const e = readEnv({
    PARAMETER_PREFIX: z.string().min(1),
    RUNS_BUCKET: z.string().min(1),
    TOPIC_ARN: z.string().min(1),
    // The stack always sets it; without it the step announces no phase event and carries on.
    EVENT_BUS_NAME: z.string().min(1).optional(),
  });
  return {
    parameterPrefix: e.PARAMETER_PREFIX,
    runsBucket: e.RUNS_BUCKET,
    topicArn: e.TOPIC_ARN,
    eventBusName: e.EVENT_BUS_NAME,
  };
});

// Named here, not from the environment: the stack's dashboard and alarms read these exact dimensions.
const metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: METRICS_SERVICE });

export const handler = step(FinishInputSchema, (input) =>
  finish(
    { s3: s3Client(), ssm: ssmClient(), sns: snsClient(), metrics, events: eventsClient() },
    env(),
    input,
  ),
);
