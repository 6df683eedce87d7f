import { z } from 'zod';
import { ec2Client, s3Client, snsClient, ssmClient, terraformBackendClients } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { PreflightEventSchema, preflight } from './preflight';

const env = once(() =>
  readEnv({
    PARAMETER_PREFIX: z.string().min(1),
    RUNS_BUCKET: z.string().min(1),
    TOPIC_ARN: z.string().min(1),
  }),
);

export const handler = step(PreflightEventSchema, (event) =>
  preflight(
    {
      ec2: ec2Client(),
      ssm: ssmClient(),
      s3: s3Client(),
      sns: snsClient(),
      stateClients: terraformBackendClients,
    },
    env(),
    event,
  ),
);
