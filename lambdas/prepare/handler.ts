import { s3Client, ssmClient } from '../shared/clients';
import { step } from '../shared/handler';
import { PrepareInputSchema, prepare } from './prepare';

export const handler = step(PrepareInputSchema, (input) =>
  prepare({ ssm: ssmClient(), s3: s3Client() }, input),
);
