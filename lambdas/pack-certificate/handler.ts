import { z } from 'zod';
import { s3Client, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { PackCertificateInputSchema, packCertificate } from './pack-certificate';

const env = once(() => ({ runsBucket: readEnv({ RUNS_BUCKET: z.string().min(1) }).RUNS_BUCKET }));

export const handler = step(PackCertificateInputSchema, (input) =>
  packCertificate({ ssm: ssmClient(), s3: s3Client() }, env(), input),
);
