import { z } from 'zod';
import { clients } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { AwaitReadinessInputSchema, awaitReadiness } from './await-readiness';

const env = once(() => readEnv({ PARAMETER_PREFIX: z.string().min(1) }));

export const handler = step(AwaitReadinessInputSchema, (input) =>
  awaitReadiness(clients(), env().PARAMETER_PREFIX, input),
);
