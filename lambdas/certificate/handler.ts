import { s3Client, ssmClient } from '../shared/clients';
import { step } from '../shared/handler';
import { CertificateInputSchema, certificate } from './certificate';

export const handler = step(CertificateInputSchema, (input) =>
  certificate({ ssm: ssmClient(), s3: s3Client() }, input),
);
