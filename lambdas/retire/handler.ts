import { z } from 'zod';
import { ec2Client, s3Client, schedulerClient, snsClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { RetirementEnvSchema } from '../shared/retirement';
import { RunStateSchema } from '../shared/schemas';
import { retire } from './retire';

const env = once(() => readEnv({ TOPIC_ARN: z.string().min(1), ...RetirementEnvSchema }));

export const handler = step(RunStateSchema, (state) =>
  retire({ ec2: ec2Client(), s3: s3Client(), sns: snsClient(), scheduler: schedulerClient() }, env(), state),
);
