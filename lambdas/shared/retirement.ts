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
 */

/** The universal target (service `ec2`, action `terminateInstances`, camel-cased as Scheduler wants it). */
export const TERMINATE_TARGET_ARN = 'arn:aws:scheduler:::aws-sdk:ec2:terminateInstances';

export const RetirementEnvSchema = {
  SCHEDULE_GROUP: z.string().min(1),
  SCHEDULER_ROLE_ARN: z.string().startsWith('arn:'),
};
export interface RetirementEnv {
  readonly SCHEDULE_GROUP: string;
  readonly SCHEDULER_ROLE_ARN: string;
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
            Arn: TERMINATE_TARGET_ARN,
            RoleArn: env.SCHEDULER_ROLE_ARN,
            Input: JSON.stringify({ InstanceIds: [request.instanceId] }),
            RetryPolicy: { MaximumRetryAttempts: 10, MaximumEventAgeInSeconds: 86_400 },
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
