import { ec2Client, s3Client } from '../shared/clients';
import { step } from '../shared/handler';
import { RunStateSchema } from '../shared/schemas';
import { launch } from './launch';

export const handler = step(RunStateSchema, (state) => launch({ ec2: ec2Client(), s3: s3Client() }, state));
