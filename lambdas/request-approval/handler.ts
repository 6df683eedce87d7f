import { z } from 'zod';
import { s3Client, snsClient, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { RequestApprovalInputSchema, requestApproval } from './request-approval';

const env = once(() => {
  const read = readEnv({ PARAMETER_PREFIX: z.string().min(1), TOPIC_ARN: z.string().min(1) });
  return { parameterPrefix: read.PARAMETER_PREFIX, topicArn: read.TOPIC_ARN };
});

export const handler = step(RequestApprovalInputSchema, (input) =>
  requestApproval({ ssm: ssmClient(), sns: snsClient(), s3: s3Client() }, env(), input),
);
