import { z } from 'zod';
import { ec2Client, sfnClient, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { AWS_IDENTITY_CERTIFICATES } from './aws-identity-certificates';
import {
  buildTrust,
  IDENTITY_KEYS_VARIABLE,
  keysOfCertificates,
  parseIdentityKeysVariable,
} from './identity';
import { signal } from './signal';

const settings = once(() => {
  const env = readEnv({
    PARAMETER_PREFIX: z.string().min(1),
    // Set only when the config adds certificates (readinessAgent.identityCertificates).
    [IDENTITY_KEYS_VARIABLE]: z
      .string()
      .optional()
      .transform((value, ctx) => {
        if (value === undefined) return {};
        try {
          return parseIdentityKeysVariable(value);
        } catch {
          ctx.addIssue({
            code: 'custom',
            message: 'not the JSON of RSA public keys by region the stack writes',
          });
          return z.NEVER;
        }
      }),
  });
  return {
    parameterPrefix: env.PARAMETER_PREFIX,
    trust: buildTrust(keysOfCertificates(AWS_IDENTITY_CERTIFICATES), env[IDENTITY_KEYS_VARIABLE]),
  };
});

// Any event is accepted at the boundary: signal() itself logs and ignores shapes it does not know.
export const handler = step(z.unknown(), (event) =>
  signal({ ssm: ssmClient(), sfn: sfnClient(), ec2: ec2Client() }, settings(), event),
);
