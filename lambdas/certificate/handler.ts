import { clients } from '../shared/clients';
import { step } from '../shared/handler';
import { CertificateInputSchema, certificate } from './certificate';

export const handler = step(CertificateInputSchema, (input) => certificate(clients(), input));
