import { ec2Client, s3Client, terraformBackendClients } from '../shared/clients';
import { step } from '../shared/handler';
import { RunStateSchema } from '../shared/schemas';
import { reconcile } from './reconcile';

export const handler = step(RunStateSchema, (state) =>
  reconcile(
    {
      ec2: ec2Client(),
      s3: s3Client(),
      stateClients: terraformBackendClients,
    },
    state,
  ),
);
