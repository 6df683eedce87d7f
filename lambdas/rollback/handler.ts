import { z } from 'zod';
import { ec2Client, eventsClient, s3Client, snsClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { RunStateSchema } from '../shared/schemas';
import { rollback } from './rollback';

const env = once(() =>
  readEnv({
    TOPIC_ARN: z.string().min(1),
    // The stack always sets it; without it the step announces no phase event and carries on.
    EVENT_BUS_NAME: z.string().min(1).optional(),
  }),
);

export const handler = step(RunStateSchema, (state) =>
  rollback({ ec2: ec2Client(), s3: s3Client(), sns: snsClient(), events: eventsClient() }, env(), state),
);
