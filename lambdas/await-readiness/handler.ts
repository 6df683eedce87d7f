import { z } from 'zod';
import { s3Client, sfnClient, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { AwaitReadinessInputSchema, awaitReadiness } from './await-readiness';

const env = once(() => readEnv({ PARAMETER_PREFIX: z.string().min(1) }));

export const handler = step(AwaitReadinessInputSchema, (input) =>
  awaitReadiness({ ssm: ssmClient(), sfn: sfnClient(), s3: s3Client() }, env().PARAMETER_PREFIX, input),
);
