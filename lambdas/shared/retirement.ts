import {
  CreateScheduleCommand,
  DeleteScheduleCommand,
  GetScheduleCommand,
  type SchedulerClient,
} from '@aws-sdk/client-scheduler';
import { z } from 'zod';
import { awsCall, hasCode } from './aws-errors';

/**
 * The end of a rollback window: a one-time EventBridge Scheduler schedule per retired box whose
 * universal target calls ec2:TerminateInstances as the stack's retirement role. That role may terminate
 * only boxes still tagged `understudy:role=retired` (lib/retirement.ts), so a box flipped back to
 * serving before the schedule fires is protected by IAM itself even if its schedule were left behind.
 * A terminate call Scheduler gives up on goes to the stack's dead-letter queue, which is alarmed on:
 * the schedule deletes itself after its run, so without the queue a failure would leave no trace.
 */

/**
 * The universal target (service `ec2`, action `terminateInstances`, camel-cased as Scheduler wants it),
 * in the partition of the account (aws, aws-cn, aws-us-gov).
 */
export const terminateTargetArn = (partition: string): string =>
  `arn:${partition}:scheduler:::aws-sdk:ec2:terminateInstances`;

const PARTITION = /^arn:(aws(?:-[a-z]+)*):/;

/** The partition an ARN of this account names; the stack's own ARNs tell the function where it runs. */
export const partitionOf = (arn: string): string => {
  const partition = PARTITION.exec(arn)?.[1];
  if (partition === undefined) throw new Error(`not an AWS ARN: ${arn}`);
  return partition;
};

export const RetirementEnvSchema = {
  SCHEDULE_GROUP: z.string().min(1),
  SCHEDULER_ROLE_ARN: z
    .string()
    .regex(/^arn:aws(-[a-z]+)*:iam::\d{12}:role\/\S+$/, "set the ARN of the stack's retirement role"),
  /** Standard SQS queue (Scheduler takes no FIFO queue), the pattern Scheduler's DeadLetterConfig accepts. */
  SCHEDULE_DEAD_LETTER_ARN: z
    .string()
    .regex(
      /^arn:aws(-[a-z]+)*:sqs:[a-z0-9-]+:\d{12}:[a-zA-Z0-9_-]+$/,
      "set the ARN of the stack's failed-terminations queue (lib/retirement.ts)",
    ),
};
export interface RetirementEnv {
  readonly SCHEDULE_GROUP: string;
  readonly SCHEDULER_ROLE_ARN: string;
  readonly SCHEDULE_DEAD_LETTER_ARN: string;
}

/**
 * One name per target and box: a retried Retire finds its own schedule (ConflictException) instead of
 * creating a second one. Target names are at most 32 characters and instance ids 19, inside the 64 allowed.
 */
export const scheduleName = (target: string, instanceId: string): string => `${target}-${instanceId}`;

/** Scheduler's one-time expression: `at(yyyy-mm-ddThh:mm:ss)`, read in ScheduleExpressionTimezone (UTC). */
export const atExpression = (iso: string): string => `at(${new Date(iso).toISOString().slice(0, 19)})`;

/** How far ahead a schedule is set at the least; Scheduler invokes with a minute's precision anyway. */
export const MIN_LEAD_MS = 5 * 60_000;

export interface TerminationSchedule {
  readonly name: string;
  readonly group: string;
  readonly expression: string;
  /** False when an earlier attempt (or run) had already created it. */
  readonly created: boolean;
}

export const scheduleTermination = async (
  scheduler: SchedulerClient,
  env: RetirementEnv,
  request: { readonly target: string; readonly instanceId: string; readonly at: string },
): Promise<TerminationSchedule> => {
  const name = scheduleName(request.target, request.instanceId);
  // A one-time schedule must lie ahead (a window of 0 hours, a retry late in the day): never in the past.
  const expression = atExpression(
    new Date(Math.max(Date.parse(request.at), Date.now() + MIN_LEAD_MS)).toISOString(),
  );
  try {
    await awsCall('CreateSchedule', () =>
      scheduler.send(
        new CreateScheduleCommand({
          Name: name,
          GroupName: env.SCHEDULE_GROUP,
          Description: `Understudy: end of the rollback window of ${request.instanceId} (target ${request.target})`,
          ScheduleExpression: expression,
          ScheduleExpressionTimezone: 'UTC',
          FlexibleTimeWindow: { Mode: 'OFF' },
          ActionAfterCompletion: 'DELETE',
          State: 'ENABLED',
          Target: {
            // The role is the stack's, so its partition is the one the schedule runs in.
            Arn: terminateTargetArn(partitionOf(env.SCHEDULER_ROLE_ARN)),
            RoleArn: env.SCHEDULER_ROLE_ARN,
            Input: JSON.stringify({ InstanceIds: [request.instanceId] }),
            // Scheduler retries with backoff until either bound is reached, then hands the event to the
            // dead-letter queue; without one it would drop it, and DELETE would remove the schedule too.
            RetryPolicy: { MaximumRetryAttempts: 10, MaximumEventAgeInSeconds: 86_400 },
            DeadLetterConfig: { Arn: env.SCHEDULE_DEAD_LETTER_ARN },
          },
        }),
      ),
    );
    return { name, group: env.SCHEDULE_GROUP, expression, created: true };
  } catch (error) {
    if (!hasCode(error, 'ConflictException')) throw error;
    return {
      name,
      group: env.SCHEDULE_GROUP,
      expression: await existingExpression(scheduler, env, name, expression),
      created: false,
    };
  }
};

const existingExpression = async (
  scheduler: SchedulerClient,
  env: RetirementEnv,
  name: string,
  fallback: string,
): Promise<string> => {
  const out = await awsCall('GetSchedule', () =>
    scheduler.send(new GetScheduleCommand({ Name: name, GroupName: env.SCHEDULE_GROUP })),
  );
  return out.ScheduleExpression ?? fallback;
};

/** Removes a box's schedule; absent (fired and deleted, or never created) is the same as removed. */
export const cancelTermination = async (
  scheduler: SchedulerClient,
  env: RetirementEnv,
  target: string,
  instanceId: string,
): Promise<'deleted' | 'absent'> => {
  try {
    await awsCall('DeleteSchedule', () =>
      scheduler.send(
        new DeleteScheduleCommand({ Name: scheduleName(target, instanceId), GroupName: env.SCHEDULE_GROUP }),
      ),
    );
    return 'deleted';
  } catch (error) {
    if (hasCode(error, 'ResourceNotFoundException')) return 'absent';
    throw error;
  }
};
