import { z } from 'zod';
import { s3Client, snsClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { ProbeInputSchema, probe } from './probe';

const env = once(() => readEnv({ TOPIC_ARN: z.string().min(1) }));

export const handler = step(ProbeInputSchema, (input) =>
  probe({ s3: s3Client(), sns: snsClient() }, { topicArn: env().TOPIC_ARN }, input),
);
