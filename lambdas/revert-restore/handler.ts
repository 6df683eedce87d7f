import { z } from 'zod';
import { ec2Client, eventsClient, s3Client, schedulerClient, snsClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { RetirementEnvSchema } from '../shared/retirement';
import { RevertRestoreEventSchema, revertRestore } from './revert-restore';

const env = once(() =>
  readEnv({
    TOPIC_ARN: z.string().min(1),
    // The stack always sets it; without it the step announces no phase event and carries on.
    EVENT_BUS_NAME: z.string().min(1).optional(),
    ...RetirementEnvSchema,
  }),
);

export const handler = step(RevertRestoreEventSchema, (state) =>
  revertRestore(
    {
      ec2: ec2Client(),
      s3: s3Client(),
      sns: snsClient(),
      scheduler: schedulerClient(),
      events: eventsClient(),
    },
    env(),
    state,
  ),
);
