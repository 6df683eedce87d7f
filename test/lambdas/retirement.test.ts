import {
  CreateScheduleCommand,
  type CreateScheduleCommandInput,
  SchedulerClient,
} from '@aws-sdk/client-scheduler';
import { mockClient } from 'aws-sdk-client-mock';
import { readEnv } from '../../lambdas/shared/env';
import {
  partitionOf,
  RetirementEnvSchema,
  scheduleTermination,
  terminateTargetArn,
} from '../../lambdas/shared/retirement';

const scheduler = mockClient(SchedulerClient);
const client = () => new SchedulerClient({ region: 'eu-west-1' });
const INSTANCE = 'i-0123456789abcdef0';
const AT = new Date(Date.now() + 24 * 3_600_000).toISOString();

const envIn = (partition: string, region: string) => ({
  SCHEDULE_GROUP: 'understudy-retirement',
  SCHEDULER_ROLE_ARN: `arn:${partition}:iam::123456789012:role/understudy-retirement`,
  SCHEDULE_DEAD_LETTER_ARN: `arn:${partition}:sqs:${region}:123456789012:understudy-failed-terminations`,
});

/** The one CreateSchedule input the call under test sent. */
const sentInput = (): CreateScheduleCommandInput => {
  const calls = scheduler.commandCalls(CreateScheduleCommand);
  expect(calls).toHaveLength(1);
  return calls[0]?.args[0].input as CreateScheduleCommandInput;
};

describe('the end-of-window schedule', () => {
  beforeEach(() => {
    scheduler.reset();
    scheduler.on(CreateScheduleCommand).resolves({ ScheduleArn: 'arn:aws:scheduler:::schedule/x' });
  });

  it('hands a terminate call Scheduler gave up on to the dead-letter queue the stack configured', async () => {
    const env = readEnv(RetirementEnvSchema, envIn('aws', 'eu-west-1'));

    await scheduleTermination(client(), env, { target: 'web', instanceId: INSTANCE, at: AT });

    const target = sentInput().Target;
    expect(target?.DeadLetterConfig).toEqual({
      Arn: 'arn:aws:sqs:eu-west-1:123456789012:understudy-failed-terminations',
    });
    // Retried first (bounded by attempts and age), dead-lettered only after that.
    expect(target?.RetryPolicy).toEqual({ MaximumRetryAttempts: 10, MaximumEventAgeInSeconds: 86_400 });
    expect(target?.Arn).toBe('arn:aws:scheduler:::aws-sdk:ec2:terminateInstances');
  });

  it.each([
    ['aws-cn', 'cn-north-1'],
    ['aws-us-gov', 'us-gov-west-1'],
  ])('names the universal target in the %s partition the stack runs in', async (partition, region) => {
    const env = readEnv(RetirementEnvSchema, envIn(partition, region));

    await scheduleTermination(client(), env, { target: 'web', instanceId: INSTANCE, at: AT });

    const target = sentInput().Target;
    expect(target?.Arn).toBe(`arn:${partition}:scheduler:::aws-sdk:ec2:terminateInstances`);
    expect(target?.RoleArn).toBe(env.SCHEDULER_ROLE_ARN);
    expect(target?.DeadLetterConfig?.Arn).toBe(env.SCHEDULE_DEAD_LETTER_ARN);
  });

  it('reads the partition from an ARN and refuses what is not one', () => {
    expect(partitionOf('arn:aws-iso-b:iam::123456789012:role/r')).toBe('aws-iso-b');
    expect(terminateTargetArn('aws-cn')).toBe('arn:aws-cn:scheduler:::aws-sdk:ec2:terminateInstances');
    expect(() => partitionOf('role/understudy-retirement')).toThrow(/not an AWS ARN/);
  });

  it('refuses an environment without the dead-letter queue, naming the variable and the fix', () => {
    const { SCHEDULE_DEAD_LETTER_ARN: _, ...withoutQueue } = envIn('aws', 'eu-west-1');
    expect(() => readEnv(RetirementEnvSchema, withoutQueue)).toThrow(/SCHEDULE_DEAD_LETTER_ARN/);
    expect(() =>
      readEnv(RetirementEnvSchema, {
        ...withoutQueue,
        // A FIFO queue: Scheduler does not take one as a dead-letter queue.
        SCHEDULE_DEAD_LETTER_ARN: 'arn:aws:sqs:eu-west-1:123456789012:terminations.fifo',
      }),
    ).toThrow(/SCHEDULE_DEAD_LETTER_ARN: set the ARN of the stack's failed-terminations queue/);
  });
});
