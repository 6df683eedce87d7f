import { dynamodbClient, dynamodbClientIn, ec2Client, s3Client, s3ClientIn } from '../shared/clients';
import { step } from '../shared/handler';
import { RunStateSchema } from '../shared/schemas';
import { reconcile } from './reconcile';

export const handler = step(RunStateSchema, (state) =>
  reconcile(
    {
      ec2: ec2Client(),
      s3: s3Client(),
      stateClients: (region) =>
        region
          ? { s3: s3ClientIn(region), dynamodb: dynamodbClientIn(region) }
          : { s3: s3Client(), dynamodb: dynamodbClient() },
    },
    state,
  ),
);
