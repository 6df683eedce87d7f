import { z } from 'zod';
import { clients } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { PreflightEventSchema, preflight } from './preflight';

const env = once(() =>
  readEnv({
    PARAMETER_PREFIX: z.string().min(1),
    RUNS_BUCKET: z.string().min(1),
    TOPIC_ARN: z.string().min(1),
  }),
);

export const handler = step(PreflightEventSchema, (event) => preflight(clients(), env(), event));
