import { z } from 'zod';
import { clients } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { SwitchEventSchema, switchAddress } from './switch';

const env = once(() => readEnv({ TOPIC_ARN: z.string().min(1) }));

export const handler = step(SwitchEventSchema, (state) => switchAddress(clients(), env(), state));
