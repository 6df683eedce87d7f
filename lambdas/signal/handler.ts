import { z } from 'zod';
import { sfnClient, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { signal } from './signal';

const env = once(() => readEnv({ PARAMETER_PREFIX: z.string().min(1) }));

// Any event is accepted at the boundary: signal() itself logs and ignores shapes it does not know.
export const handler = step(z.unknown(), (event) =>
  signal({ ssm: ssmClient(), sfn: sfnClient() }, env().PARAMETER_PREFIX, event),
);
