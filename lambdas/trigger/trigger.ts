import {
  DescribeAddressesCommand,
  DescribeImagesCommand,
  DescribeInstanceStatusCommand,
  type EC2Client,
  type InstanceStatus,
} from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SchedulerClient } from '@aws-sdk/client-scheduler';
import { type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { awsCall, hasCode } from '../shared/aws-errors';
import {
  formatIssues,
  ImageIdSchema,
  type TargetConfig,
  TargetNameSchema,
  type TriggerKind,
} from '../shared/config';
import { runKeys } from '../shared/constants';
import { ErrorNames, isUnderstudyError, refused, UnderstudyError } from '../shared/errors';
import { lockHolder } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { type ExecutionInput, ExecutionInputSchema } from '../shared/schemas';
import { loadTargetConfig, parameterValue } from '../shared/targets';
import { checkMaintenanceWindow } from '../shared/window';
import { afterLock, type DeferralSettings, deferTrigger, nextOpening } from './defer';

/**
 * The trigger function: turns an automatic trigger's event (shaped by its rule's input transformer or
 * its schedule's input, lib/triggers.ts) into one execution of the replace state machine.
 *
 * Why a function rather than a rule targeting the state machine directly: neither "Parameter Store
 * Change" nor "EC2 Image Builder Image State Change" carries the AMI id, and design §3 wants two triggers
 * for the same image (a build's AVAILABLE event and the parameter its distribution writes) to start
 * one run. The parameter trigger reads the AMI id from the parameter, the Image Builder trigger from the
 * AMI the build tagged with its ARN (the parameter's aws:ec2:image data type is validated asynchronously,
 * so the AVAILABLE event can arrive while it still holds the previous AMI); both name the execution
 * `<target>-<ami-id>`. Step Functions refuses a second execution of that name (ExecutionAlreadyExists;
 * or returns the running one for an identical input), which is the de-duplication.
 *
 * A name is used up for 90 days once an execution carries it, so what preflight would refuse for now
 * (outside the maintenance windows, another run holding the target's lock) is not started but deferred
 * (defer.ts): a one-time schedule brings the same event back when the window opens or a little later.
 */

const SCHEDULED_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

export const TriggerEventSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('imageParameter'),
    target: TargetNameSchema,
    /** `detail.name` of the Parameter Store Change event. */
    parameter: z.string().min(1).max(2048),
    /** `detail.operation`: Create, Update, Delete, LabelParameterVersion... */
    operation: z.string().min(1).max(64),
  }),
  z.object({
    kind: z.literal('imageBuilder'),
    target: TargetNameSchema,
    /** `resources[0]`: the image build version ARN. */
    image: z.string().regex(/^arn:aws[a-z-]*:imagebuilder:/, 'use the Image Builder image ARN'),
    /** `detail.state.status`. */
    status: z.string().min(1).max(32),
  }),
  z.object({
    kind: z.literal('schedule'),
    target: TargetNameSchema,
    /** Scheduler's `<aws.scheduler.scheduled-time>`: the slot, the same on every redelivery. */
    scheduledTime: z.string().regex(SCHEDULED_TIME, 'use the schedule time as 2026-11-29T03:00:00Z'),
  }),
  z.object({ kind: z.literal('selfHeal'), target: TargetNameSchema }),
]);
export type TriggerEvent = z.infer<typeof TriggerEventSchema>;

export interface TriggerClients {
  readonly ssm: SSMClient;
  readonly sfn: SFNClient;
  readonly ec2: EC2Client;
  readonly s3: S3Client;
  readonly scheduler: SchedulerClient;
}

export interface TriggerSettings extends DeferralSettings {
  readonly parameterPrefix: string;
  readonly stateMachineArn: string;
  /** Where the target locks live (lambdas/shared/lock.ts), read here and never written. */
  readonly runsBucket: string;
}

export type TriggerResult =
  | { readonly started: true; readonly executionName: string; readonly executionArn: string }
  | {
      readonly started: false;
      readonly executionName?: string;
      readonly reason: string;
      /** When the same event comes back (a deferral), as an ISO time. */
      readonly deferredUntil?: string;
    };

const MAX_REASON = 256;
const clip = (reason: string): string =>
  reason.length <= MAX_REASON ? reason : `${reason.slice(0, MAX_REASON - 1)}…`;

const loadTarget = (ssm: SSMClient, prefix: string, name: string): Promise<TargetConfig> =>
  loadTargetConfig(ssm, prefix, name, 'event.target');

/** The AMI id the target's image parameter holds now; refused when it holds none. */
const publishedImage = async (ssm: SSMClient, target: TargetConfig): Promise<string> => {
  const name = target.image.ssmParameter;
  if (name === undefined) {
    throw refused(`image.ssmParameter: target ${target.name} publishes no image parameter to read`, {
      field: 'image.ssmParameter',
    });
  }
  const value = await parameterValue(ssm, name);
  if (value === undefined || !ImageIdSchema.safeParse(value).success) {
    throw refused(
      `image.ssmParameter: ${name} holds ${value === undefined ? 'nothing' : `"${value.slice(0, 64)}"`}, not an AMI id; no run was started`,
      { field: 'image.ssmParameter' },
    );
  }
  return value;
};

/** The tag Image Builder puts on every AMI it distributes: the ARN of the image build that made it. */
export const IMAGE_BUILDER_ARN_TAG = 'Ec2ImageBuilderArn';

/**
 * The AMI the Image Builder image left in this account and region: EC2's own images tagged with the
 * build's ARN (so no Image Builder client is needed). Several would mean several distributions to
 * this region; the newest wins.
 */
const builtImage = async (ec2: EC2Client, imageArn: string): Promise<string> => {
  const out = await awsCall('DescribeImages', () =>
    ec2.send(
      new DescribeImagesCommand({
        Owners: ['self'],
        Filters: [
          { Name: `tag:${IMAGE_BUILDER_ARN_TAG}`, Values: [imageArn] },
          { Name: 'state', Values: ['available'] },
        ],
      }),
    ),
  );
  const newest = [...(out.Images ?? [])]
    .filter((i) => ImageIdSchema.safeParse(i.ImageId).success)
    .sort((a, b) => (b.CreationDate ?? '').localeCompare(a.CreationDate ?? ''))[0];
  if (newest?.ImageId === undefined) {
    throw refused(
      `image.build: no available AMI of this account here is tagged ${IMAGE_BUILDER_ARN_TAG}=${imageArn}; no run was started`,
      { field: 'image.build' },
    );
  }
  return newest.ImageId;
};

/** What DescribeInstanceStatus says of a box EC2 has stopped: no checks run, nothing is served. */
const HALTED = new Set(['stopping', 'stopped']);

const STATUS_PARTS = [
  ['InstanceStatus', 'instance'],
  ['SystemStatus', 'system'],
  ['AttachedEbsStatus', 'attached EBS'],
] as const;

/** Which status checks fail and since when (the earliest failing detail), or undefined when none do. */
export const impairment = (
  status: InstanceStatus | undefined,
): { checks: string[]; since: Date | undefined; halted?: string } | undefined => {
  if (!status) return undefined;
  const state = status.InstanceState?.Name;
  if (state !== undefined && HALTED.has(state)) return { checks: [], since: undefined, halted: state };
  const failing = STATUS_PARTS.filter(([key]) => status[key]?.Status === 'impaired');
  if (failing.length === 0) return undefined;
  const times = failing
    .flatMap(([key]) => status[key]?.Details ?? [])
    .flatMap((d) => (d.Status === 'failed' && d.ImpairedSince ? [d.ImpairedSince.getTime()] : []));
  return {
    checks: failing.map(([, label]) => label),
    since: times.length > 0 ? new Date(Math.min(...times)) : undefined,
  };
};

/** What a trigger asks for: the execution's name and input, or why nothing should start. */
type Decision =
  | { readonly start: true; readonly name: string; readonly input: ExecutionInput }
  | { readonly start: false; readonly reason: string };

const skip = (reason: string): Decision => ({ start: false, reason });

const decide = async (
  clients: TriggerClients,
  event: TriggerEvent,
  target: TargetConfig,
  now: Date,
): Promise<Decision> => {
  const base = { target: target.name, action: 'replace', dryRun: false, trigger: event.kind } as const;
  switch (event.kind) {
    case 'imageParameter': {
      if (event.parameter !== target.image.ssmParameter) {
        return skip(`${event.parameter} is not the image parameter of target ${target.name}`);
      }
      if (event.operation !== 'Create' && event.operation !== 'Update') {
        return skip(`operation ${event.operation} publishes no image`);
      }
      const imageId = await publishedImage(clients.ssm, target);
      return {
        start: true,
        name: `${target.name}-${imageId}`,
        input: {
          ...base,
          imageId,
          reason: clip(`image parameter ${event.parameter} changed (${event.operation})`),
        },
      };
    }
    case 'imageBuilder': {
      if (event.status !== 'AVAILABLE') return skip(`image ${event.image} is ${event.status}, not AVAILABLE`);
      const imageId = await builtImage(clients.ec2, event.image);
      return {
        start: true,
        name: `${target.name}-${imageId}`,
        input: { ...base, imageId, reason: clip(`Image Builder image ${event.image} is AVAILABLE`) },
      };
    }
    case 'schedule': {
      const schedule = target.triggers?.schedule;
      const slot = event.scheduledTime
        .replace(/\.\d+Z$/, 'Z')
        .replace(/[-:]/g, '')
        .replace(/00Z$/, 'Z');
      // The configured image, resolved by preflight: a schedule replaces with whatever is published.
      return {
        start: true,
        name: `${target.name}-schedule-${slot}`,
        input: {
          ...base,
          reason: clip(
            `schedule ${schedule?.expression ?? ''} (${schedule?.timezone ?? 'UTC'}) at ${event.scheduledTime}`,
          ),
        },
      };
    }
    case 'selfHeal': {
      const minutes = target.triggers?.selfHeal?.impairedMinutes ?? 10;
      const addresses = await awsCall('DescribeAddresses', () =>
        clients.ec2.send(new DescribeAddressesCommand({ AllocationIds: [target.allocationId] })),
      );
      const instanceId = addresses.Addresses?.[0]?.InstanceId;
      if (!instanceId) return skip(`Elastic IP ${target.allocationId} is associated with no instance`);
      correlate({ instance: instanceId });
      const statuses = await awsCall('DescribeInstanceStatus', () =>
        // Without IncludeAllInstances a stopped box is left out and would read as healthy.
        clients.ec2.send(
          new DescribeInstanceStatusCommand({ InstanceIds: [instanceId], IncludeAllInstances: true }),
        ),
      );
      const failing = impairment(statuses.InstanceStatuses?.[0]);
      if (!failing) return skip(`the status checks of ${instanceId} pass`);
      if (failing.halted) {
        // No threshold: a stopped box does not come back by itself, unlike a flapping status check.
        return {
          start: true,
          name: `${target.name}-heal-${instanceId}`,
          input: {
            ...base,
            reason: clip(`self-heal: ${instanceId} behind the Elastic IP is ${failing.halted}`),
          },
        };
      }
      const { since, checks } = failing;
      if (!since || now.getTime() - since.getTime() < minutes * 60_000) {
        return skip(
          `the ${checks.join(' and ')} status check of ${instanceId} fails, but for less than triggers.selfHeal.impairedMinutes (${minutes})`,
        );
      }
      return {
        start: true,
        // One healing run per broken box: the next check of the same box finds the name taken.
        name: `${target.name}-heal-${instanceId}`,
        input: {
          ...base,
          reason: clip(
            `self-heal: the ${checks.join(' and ')} status check of ${instanceId} has failed since ${since.toISOString()}`,
          ),
        },
      };
    }
  }
};

/**
 * Why preflight would refuse this run now and when to look again, or undefined when it may start. The
 * same window rule as preflight's (it stays there for events that come by other routes); the lock only
 * read, and a lease that ran out counts as free, as preflight would take it over.
 */
const holdBack = async (
  clients: TriggerClients,
  settings: TriggerSettings,
  target: TargetConfig,
  input: ExecutionInput,
  name: string,
  now: Date,
): Promise<{ until: Date; reason: string } | undefined> => {
  try {
    checkMaintenanceWindow(target, input, now);
  } catch (error) {
    if (!isUnderstudyError(error, ErrorNames.PreflightRefused)) throw error;
    const opening = nextOpening(target.triggers?.maintenanceWindows ?? [], now);
    if (opening === undefined) throw error;
    return {
      until: opening,
      reason: `outside every maintenance window of target ${target.name}; the next one opens at ${opening.toISOString()}`,
    };
  }
  const holder = await lockHolder(clients.s3, settings.runsBucket, runKeys.lock(target.name));
  if (holder && holder.executionName !== name && Date.parse(holder.expiresAt) > now.getTime()) {
    return {
      until: afterLock(now),
      reason: `execution ${holder.executionName} holds the lock of target ${target.name}`,
    };
  }
  return undefined;
};

const enabled = (target: TargetConfig, kind: TriggerKind): boolean => {
  const triggers = target.triggers;
  if (!triggers) return false;
  return kind === 'imageParameter' || kind === 'imageBuilder' ? triggers[kind] : triggers[kind] !== undefined;
};

export const trigger = async (
  clients: TriggerClients,
  settings: TriggerSettings,
  event: TriggerEvent,
  now: Date,
): Promise<TriggerResult> => {
  correlate({ target: event.target });
  const target = await loadTarget(clients.ssm, settings.parameterPrefix, event.target);
  if (!enabled(target, event.kind)) {
    // A rule or schedule left behind by an older deployment: the current config has the final say.
    const reason = `triggers.${event.kind} is not enabled for target ${target.name}`;
    logger.warn('trigger ignored', { kind: event.kind, reason });
    return { started: false, reason };
  }
  const decision = await decide(clients, event, target, now);
  if (!decision.start) {
    logger.info('trigger started nothing', { kind: event.kind, reason: decision.reason });
    return { started: false, reason: decision.reason };
  }
  // The same contract as any other start (design §3): what preflight would refuse is not started.
  const input = ExecutionInputSchema.safeParse(decision.input);
  if (!input.success) {
    throw new UnderstudyError(ErrorNames.InvalidInput, formatIssues(input.error, 'input').join('; '));
  }
  const name = decision.name;
  const held = await holdBack(clients, settings, target, input.data, name, now);
  if (held) {
    const deferral = await deferTrigger(
      clients.scheduler,
      settings,
      { executionName: name, event, at: held.until, now },
      `Understudy: the ${event.kind} trigger of target ${target.name} again (${name}): ${held.reason}`,
    );
    const reason = clip(`deferred until ${deferral.at}: ${held.reason}`);
    logger.info('trigger deferred', {
      kind: event.kind,
      executionName: name,
      schedule: deferral.schedule,
      alreadyDeferred: !deferral.created,
      reason,
    });
    return { started: false, executionName: name, reason, deferredUntil: deferral.at };
  }
  try {
    const out = await awsCall('StartExecution', () =>
      clients.sfn.send(
        new StartExecutionCommand({
          stateMachineArn: settings.stateMachineArn,
          name,
          input: JSON.stringify(input.data),
        }),
      ),
    );
    logger.info('replacement started', { kind: event.kind, executionName: name });
    return { started: true, executionName: name, executionArn: out.executionArn ?? '' };
  } catch (error) {
    // Not a failure here: the de-duplication this naming exists for.
    if (!hasCode(error, 'ExecutionAlreadyExists')) throw error;
    const reason = `execution ${name} already exists: another trigger started this replacement (de-duplicated by target and image)`;
    logger.info('trigger de-duplicated', { kind: event.kind, executionName: name });
    return { started: false, executionName: name, reason };
  }
};
