import { ec2Client, s3Client, ssmClient } from '../shared/clients';
import { step } from '../shared/handler';
import { AwaitRestoredEventSchema, awaitRestored } from './await-restored';

export const handler = step(AwaitRestoredEventSchema, (state) =>
  awaitRestored({ ec2: ec2Client(), ssm: ssmClient(), s3: s3Client() }, state),
);
