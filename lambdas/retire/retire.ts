import {
  CreateTagsCommand,
  type EC2Client,
  type Instance,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SchedulerClient } from '@aws-sdk/client-scheduler';
import type { SNSClient } from '@aws-sdk/client-sns';
import { awsCall, describeAwsError, failAs, hasCode } from '../shared/aws-errors';
import { Tags } from '../shared/constants';
import { describeInstanceById, describeTargetBoxes, instanceAttribute } from '../shared/ec2';
import { ErrorNames } from '../shared/errors';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { publishQuietly } from '../shared/notify';
import {
  cancelTermination,
  type RetirementEnv,
  scheduleTermination,
  type TerminationSchedule,
} from '../shared/retirement';
import type { RunState } from '../shared/schemas';

/**
 * Retire: the old server is stopped, not terminated, and labelled with the end of its rollback window;
 * a one-time schedule terminates it when the window ends (lambdas/shared/retirement.ts). A server that
 * cannot be stopped here (stop protection) is left running with a warning: the replacement itself
 * already succeeded. The target's earlier retired box, whose window may still be open, goes now
 * (design §2.10: a newer success closes the older window), together with its schedule.
 * The new box is relabelled `serving`: the permissions that park a failed candidate are scoped to
 * role=candidate, and must never reach the box that now carries the site.
 */

export interface RetireClients {
  readonly ec2: EC2Client;
  readonly s3: S3Client;
  readonly sns: SNSClient;
  readonly scheduler: SchedulerClient;
}

export interface RetireEnv extends RetirementEnv {
  readonly TOPIC_ARN: string;
}

export interface PreviousRetired {
  readonly instanceId: string;
  readonly action: 'terminated' | `kept: ${string}`;
  /** What became of its end-of-window schedule (terminated boxes only). */
  readonly schedule?: 'deleted' | 'absent';
}

export interface RetireResult {
  readonly oldInstanceId: string;
  /** True when the old server is stopping or stopped. */
  readonly stopped: boolean;
  readonly retireAfter: string;
  /** The schedule that terminates the old server when its window ends (absent when it is already gone). */
  readonly schedule?: Omit<TerminationSchedule, 'created'>;
  /** Boxes retired by earlier runs of the target, terminated now that this run succeeded. */
  readonly previous?: PreviousRetired[];
  /** Failed candidates past `retention.failedCandidateDays`, terminated now. */
  readonly expiredCandidates?: { readonly instanceId: string; readonly action: PreviousRetired['action'] }[];
  readonly note?: string;
}

const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'];

const tagOf = (instance: Instance, key: string): string | undefined =>
  instance.Tags?.find((t) => t.Key === key)?.Value;

/** A retry keeps the window the first attempt wrote, so the tag and the schedule agree. */
const windowEnd = (instance: Instance | undefined, windowHours: number): string => {
  const written =
    instance && tagOf(instance, Tags.role) === 'retired' ? tagOf(instance, Tags.retireAfter) : undefined;
  if (written && !Number.isNaN(Date.parse(written))) return written;
  return new Date(Date.now() + windowHours * 3_600_000).toISOString();
};

export const retire = (clients: RetireClients, env: RetireEnv, state: RunState): Promise<RetireResult> =>
  runRetire(clients, env, state).catch(
    failAs(ErrorNames.RetireFailed, `retiring ${state.run.old.instanceId}`),
  );

const runRetire = async (clients: RetireClients, env: RetireEnv, state: RunState): Promise<RetireResult> => {
  const { ec2, s3, sns, scheduler } = clients;
  const plan = state.run;
  const id = plan.old.instanceId;
  correlate({ target: plan.target.name, execution: state.execution.name, instance: id });
  await renewHeldLock(s3, plan.lock);

  const serving = state.launch?.instanceId;
  if (serving) {
    await awsCall('CreateTags', () =>
      ec2.send(new CreateTagsCommand({ Resources: [serving], Tags: [{ Key: Tags.role, Value: 'serving' }] })),
    );
  }

  if (serving && plan.action === 'rollback') {
    // The box a rollback brought back serves again: its own end-of-window schedule must not fire.
    await cancelTermination(scheduler, env, plan.target.name, serving);
  }

  const instance = await describeInstanceById(ec2, id);
  const retireAfter = windowEnd(instance, plan.target.rollback.windowHours);
  if (!instance) {
    const previous = await terminatePrevious(clients, env, state, [id]);
    return {
      oldInstanceId: id,
      stopped: false,
      retireAfter,
      ...(previous.length > 0 ? { previous } : {}),
      note: `old server ${id} no longer exists`,
    };
  }
  const current = instance.State?.Name ?? 'unknown';

  let stopped = current === 'stopping' || current === 'stopped';
  let note: string | undefined;
  if (current === 'terminated' || current === 'shutting-down') {
    note = `old server ${id} is already ${current}`;
  } else if (!stopped) {
    const protection = await instanceAttribute(ec2, id, 'disableApiStop');
    if (protection.DisableApiStop?.Value === true) {
      note = `old server ${id} has stop protection (disableApiStop) and was left running; stop it by hand before ${retireAfter}`;
    } else {
      try {
        await awsCall('StopInstances', () => ec2.send(new StopInstancesCommand({ InstanceIds: [id] })));
        stopped = true;
      } catch (error) {
        if (!hasCode(error, 'OperationNotPermitted', 'UnsupportedOperation')) throw error;
        note = `old server ${id} could not be stopped (${describeAwsError(error)}) and was left running`;
      }
    }
  }

  if (current !== 'terminated') {
    await awsCall('CreateTags', () =>
      ec2.send(
        new CreateTagsCommand({
          Resources: [id],
          Tags: [
            { Key: Tags.role, Value: 'retired' },
            { Key: Tags.retireAfter, Value: retireAfter },
          ],
        }),
      ),
    );
  }

  let schedule: TerminationSchedule | undefined;
  if (current !== 'terminated' && current !== 'shutting-down') {
    schedule = await scheduleTermination(scheduler, env, {
      target: plan.target.name,
      instanceId: id,
      at: retireAfter,
    });
    logger.info('scheduled the end of the rollback window', { schedule: schedule.name, at: retireAfter });
  }
  const previous = await terminatePrevious(clients, env, state, [id]);
  const expired = await terminateExpiredCandidates(clients, state);
  const kept = [
    ...previous
      .filter((p) => p.action !== 'terminated')
      .map((p) => `earlier retired server ${p.instanceId} was ${p.action}`),
    ...expired
      .filter((p) => p.action !== 'terminated')
      .map((p) => `failed candidate ${p.instanceId} was ${p.action}`),
  ];
  const stopNote = note;
  if (kept.length > 0) {
    const more = kept.join('; ');
    note = note ? `${note}; ${more}` : more;
  }

  if (note) {
    logger.warn('retire left something to a human', { note });
    await publishQuietly(
      sns,
      env.TOPIC_ARN,
      {
        kind: 'warning',
        event: stopNote ? 'old-server-running' : 'kept-by-protection',
        target: plan.target.name,
        execution: state.execution.name,
        summary: note,
        details: { oldInstanceId: id, retireAfter },
      },
      'the retire warning',
    );
  }
  return {
    oldInstanceId: id,
    stopped,
    retireAfter,
    ...(schedule
      ? { schedule: { name: schedule.name, group: schedule.group, expression: schedule.expression } }
      : {}),
    ...(previous.length > 0 ? { previous } : {}),
    ...(expired.length > 0 ? { expiredCandidates: expired } : {}),
    ...(note ? { note } : {}),
  };
};

const DAY_MS = 86_400_000;

/**
 * retention.failedCandidateDays: stopped failed candidates of the target older than that are
 * terminated on this success (a success, so that a run of failures keeps its evidence). Launch time
 * stands for the failure's: a candidate fails within its run, hours at most after its launch.
 */
const terminateExpiredCandidates = async (
  clients: RetireClients,
  state: RunState,
): Promise<{ instanceId: string; action: PreviousRetired['action'] }[]> => {
  const days = state.run.target.retention?.failedCandidateDays;
  if (days === undefined) return [];
  const { ec2 } = clients;
  const cutoff = Date.now() - days * DAY_MS;
  const old = (await describeTargetBoxes(ec2, state.run.target.name, 'failed', ['stopped'])).filter(
    (i) => i.LaunchTime !== undefined && i.LaunchTime.getTime() < cutoff,
  );
  const results: { instanceId: string; action: PreviousRetired['action'] }[] = [];
  for (const instance of old) {
    const id = instance.InstanceId as string;
    try {
      await awsCall('TerminateInstances', () =>
        ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] })),
      );
      results.push({ instanceId: id, action: 'terminated' });
    } catch (error) {
      if (!hasCode(error, 'OperationNotPermitted', 'UnsupportedOperation')) throw error;
      results.push({ instanceId: id, action: `kept: ${describeAwsError(error)}` });
    }
  }
  return results;
};

/**
 * Every other box of the target still labelled retired: its window belonged to an older run. The
 * terminate right is itself limited to role=retired, so the serving box can never be hit here.
 */
const terminatePrevious = async (
  clients: RetireClients,
  env: RetireEnv,
  state: RunState,
  keep: readonly string[],
): Promise<PreviousRetired[]> => {
  const { ec2, scheduler } = clients;
  const target = state.run.target.name;
  const exclude = new Set([...keep, ...(state.launch ? [state.launch.instanceId] : [])]);
  const found = (await describeTargetBoxes(ec2, target, 'retired', LIVE_STATES)).filter(
    (i) => !exclude.has(i.InstanceId as string),
  );
  const results: PreviousRetired[] = [];
  for (const instance of found) {
    const id = instance.InstanceId as string;
    let action: PreviousRetired['action'] = 'terminated';
    try {
      await awsCall('TerminateInstances', () =>
        ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] })),
      );
    } catch (error) {
      if (!hasCode(error, 'OperationNotPermitted', 'UnsupportedOperation')) throw error;
      // Termination protection is the owner's explicit wish: reported, not lifted.
      action = `kept: ${describeAwsError(error)}`;
    }
    // A kept box keeps its schedule: it still ends the window, should the protection be lifted.
    results.push(
      action === 'terminated'
        ? { instanceId: id, action, schedule: await cancelTermination(scheduler, env, target, id) }
        : { instanceId: id, action },
    );
  }
  return results;
};
