import { z } from 'zod';
import { ec2Client, sfnClient, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { TriggerEventSchema, trigger } from './trigger';

const settings = once(() => {
  const env = readEnv({
    PARAMETER_PREFIX: z.string().min(1),
    STATE_MACHINE_ARN: z.string().regex(/^arn:aws[a-z-]*:states:/, 'the replace state machine ARN'),
  });
  return { parameterPrefix: env.PARAMETER_PREFIX, stateMachineArn: env.STATE_MACHINE_ARN };
});

export const handler = step(TriggerEventSchema, (event) =>
  trigger({ ssm: ssmClient(), sfn: sfnClient(), ec2: ec2Client() }, settings(), event, new Date()),
);
