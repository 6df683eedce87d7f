import { z } from 'zod';
import { s3Client, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { PrepareInputSchema, prepare } from './prepare';

const env = once(() => ({ runsBucket: readEnv({ RUNS_BUCKET: z.string().min(1) }).RUNS_BUCKET }));

export const handler = step(PrepareInputSchema, (input) =>
  prepare({ ssm: ssmClient(), s3: s3Client() }, env(), input),
);
