import { clients } from '../shared/clients';
import { step } from '../shared/handler';
import { AwaitRunningEventSchema, awaitRunning } from './await-running';

export const handler = step(AwaitRunningEventSchema, (state) => awaitRunning(clients(), state));
