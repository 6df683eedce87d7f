import { s3Client, ssmClient } from '../shared/clients';
import { step } from '../shared/handler';
import { HookInputSchema, runHook } from './hook';

export const handler = step(HookInputSchema, (input) => runHook({ ssm: ssmClient(), s3: s3Client() }, input));
