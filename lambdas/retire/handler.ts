import { z } from 'zod';
import { ec2Client, s3Client, snsClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { RunStateSchema } from '../shared/schemas';
import { retire } from './retire';

const env = once(() => readEnv({ TOPIC_ARN: z.string().min(1) }));

export const handler = step(RunStateSchema, (state) =>
  retire({ ec2: ec2Client(), s3: s3Client(), sns: snsClient() }, env(), state),
);
