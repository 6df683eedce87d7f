import { ssmClient } from '../shared/clients';
import { step } from '../shared/handler';
import { AwaitCommandInputSchema, awaitCommand } from './await-command';

export const handler = step(AwaitCommandInputSchema, (input) => awaitCommand(ssmClient(), input));
