import { z } from 'zod';
import { s3Client, snsClient, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { FinishInputSchema, finish } from './finish';

const env = once(() => {
  const e = readEnv({
    PARAMETER_PREFIX: z.string().min(1),
    RUNS_BUCKET: z.string().min(1),
    TOPIC_ARN: z.string().min(1),
  });
  return { parameterPrefix: e.PARAMETER_PREFIX, runsBucket: e.RUNS_BUCKET, topicArn: e.TOPIC_ARN };
});

export const handler = step(FinishInputSchema, (input) =>
  finish({ s3: s3Client(), ssm: ssmClient(), sns: snsClient() }, env(), input),
);
