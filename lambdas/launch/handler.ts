import { clients } from '../shared/clients';
import { step } from '../shared/handler';
import { RunStateSchema } from '../shared/schemas';
import { launch } from './launch';

export const handler = step(RunStateSchema, (state) => launch(clients(), state));
