import { ec2Client, s3Client, schedulerClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { RetirementEnvSchema } from '../shared/retirement';
import { StartRetiredEventSchema, startRetired } from './start-retired';

const env = once(() => readEnv(RetirementEnvSchema));

export const handler = step(StartRetiredEventSchema, (state) =>
  startRetired({ ec2: ec2Client(), s3: s3Client(), scheduler: schedulerClient() }, env(), state),
);
