import { z } from 'zod';
import { ec2Client, s3Client, schedulerClient, snsClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { RetirementEnvSchema } from '../shared/retirement';
import { RevertRestoreEventSchema, revertRestore } from './revert-restore';

const env = once(() => readEnv({ TOPIC_ARN: z.string().min(1), ...RetirementEnvSchema }));

export const handler = step(RevertRestoreEventSchema, (state) =>
  revertRestore(
    { ec2: ec2Client(), s3: s3Client(), sns: snsClient(), scheduler: schedulerClient() },
    env(),
    state,
  ),
);
