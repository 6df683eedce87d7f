import { z } from 'zod';
import {
  ec2Client,
  eventsClient,
  s3Client,
  snsClient,
  ssmClient,
  terraformBackendClients,
} from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { PreflightEventSchema, preflight } from './preflight';

const env = once(() =>
  readEnv({
    PARAMETER_PREFIX: z.string().min(1),
    RUNS_BUCKET: z.string().min(1),
    TOPIC_ARN: z.string().min(1),
    // The stack always sets it; without it the step announces no phase event and carries on.
    EVENT_BUS_NAME: z.string().min(1).optional(),
  }),
);

export const handler = step(PreflightEventSchema, (event) =>
  preflight(
    {
      ec2: ec2Client(),
      ssm: ssmClient(),
      s3: s3Client(),
      sns: snsClient(),
      events: eventsClient(),
      stateClients: terraformBackendClients,
    },
    env(),
    event,
  ),
);
