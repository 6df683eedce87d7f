import { z } from 'zod';
import { ec2Client, s3Client, schedulerClient, sfnClient, ssmClient } from '../shared/clients';
import { once, readEnv } from '../shared/env';
import { step } from '../shared/handler';
import { TriggerEventSchema, trigger } from './trigger';

const settings = once(() => {
  const env = readEnv({
    PARAMETER_PREFIX: z.string().min(1),
    STATE_MACHINE_ARN: z.string().regex(/^arn:aws[a-z-]*:states:/, 'the replace state machine ARN'),
    RUNS_BUCKET: z.string().min(1),
    SCHEDULE_GROUP: z.string().min(1),
    SCHEDULER_ROLE_ARN: z.string().regex(/^arn:aws[a-z-]*:iam::/, 'the role deferral schedules run as'),
  });
  return {
    parameterPrefix: env.PARAMETER_PREFIX,
    stateMachineArn: env.STATE_MACHINE_ARN,
    runsBucket: env.RUNS_BUCKET,
    scheduleGroup: env.SCHEDULE_GROUP,
    schedulerRoleArn: env.SCHEDULER_ROLE_ARN,
  };
});

/** The function's own ARN without a qualifier: what the scheduler role may invoke. */
const unqualified = (arn: string): string => arn.split(':').slice(0, 7).join(':');

export const handler = step(TriggerEventSchema, (event, context) =>
  trigger(
    {
      ssm: ssmClient(),
      sfn: sfnClient(),
      ec2: ec2Client(),
      s3: s3Client(),
      scheduler: schedulerClient(),
    },
    { ...settings(), functionArn: unqualified(context.invokedFunctionArn) },
    event,
    new Date(),
  ),
);
