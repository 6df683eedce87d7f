import { ec2Client } from '../shared/clients';
import { step } from '../shared/handler';
import { AwaitRunningEventSchema, awaitRunning } from './await-running';

export const handler = step(AwaitRunningEventSchema, (state) => awaitRunning({ ec2: ec2Client() }, state));
