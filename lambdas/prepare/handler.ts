import { clients } from '../shared/clients';
import { step } from '../shared/handler';
import { PrepareInputSchema, prepare } from './prepare';

export const handler = step(PrepareInputSchema, (input) => prepare(clients(), input));
