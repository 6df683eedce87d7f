import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import { DeleteParametersCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { describeAwsError, isTransient } from '../shared/aws-errors';
import { formatIssues, TargetNameSchema } from '../shared/config';
import { parameterNames, runKeys } from '../shared/constants';
import { ErrorNames, isUnderstudyError, UnderstudyError } from '../shared/errors';
import { releaseLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { emitRunMetrics, type MetricsSink } from '../shared/metrics';
import {
  type ComposedMessage,
  composeMessage,
  executionConsoleLink,
  type Outcome,
  type OutcomeReport,
  outcomeHeadline,
  outcomeText,
  phaseBus,
  publish,
  putPhaseEvent,
  rollbackCommands,
} from '../shared/notify';
import {
  type CaughtError,
  CaughtErrorSchema,
  CommandRefSchema,
  ExecutionContextSchema,
  ExecutionInputSchema,
  LaunchResultSchema,
  LockSchema,
  type Plan,
  PlanSchema,
  RestoredResultSchema,
  SwitchResultSchema,
} from '../shared/schemas';
import { manualReconcileCommand } from '../shared/tfstate/manual';
import { lockIdFor } from '../shared/tfstate/s3-lock';
import { deleteTransferObjects, transferPrefix } from '../shared/tls';

/**
 * The last step of every run, whatever happened before: it must work on a state where any key may be
 * missing or malformed (preflight refused the input, a step crashed). Every key is therefore parsed on
 * its own, and only allow-listed fields reach the run record and the message: no task tokens, no user
 * data, no payloads copied through.
 *
 * Exactly one outcome message per run: Finish composes it and returns it, and the state machine's
 * AnnounceOutcome state publishes it. A function can die after its Publish took effect and be retried
 * (a second message); a Standard workflow runs each state once, so handing the Publish to Step Functions
 * is what makes "exactly one" hold. Warnings are still published here: repeating one is harmless.
 */

export const FinishInputSchema = z.looseObject({
  execution: ExecutionContextSchema,
  input: z.unknown().optional(),
  run: z.unknown().optional(),
  launch: z.unknown().optional(),
  readiness: z.unknown().optional(),
  restore: z.unknown().optional(),
  pack: z.unknown().optional(),
  prepare: z.unknown().optional(),
  switch: z.unknown().optional(),
  certificate: z.unknown().optional(),
  probe: z.unknown().optional(),
  error: z.unknown().optional(),
  rollback: z.unknown().optional(),
  rollbackError: z.unknown().optional(),
  retire: z.unknown().optional(),
  retireError: z.unknown().optional(),
  reconcile: z.unknown().optional(),
  reconcileError: z.unknown().optional(),
  hookRuns: z.record(z.string(), z.unknown()).optional(),
});
export type FinishInput = z.infer<typeof FinishInputSchema>;

// Shapes owned by the rollback and retire steps, read leniently: Finish only needs a few fields.
const RollbackSummarySchema = z.object({
  outcome: z.enum(['rolled-back', 'manual-action-needed']),
  eipInstanceId: z.string().optional(),
  serviceHealthy: z.boolean().optional(),
  candidates: z.array(z.object({ instanceId: z.string(), action: z.string() })).optional(),
  commands: z.array(z.string()).optional(),
});
const RetireSummarySchema = z.object({
  oldInstanceId: z.string(),
  stopped: z.boolean(),
  retireAfter: z.string(),
  // The end-of-window schedule and the earlier retired boxes this success terminated.
  schedule: z.object({ name: z.string(), group: z.string(), expression: z.string() }).optional(),
  previous: z
    .array(z.object({ instanceId: z.string(), action: z.string(), schedule: z.string().optional() }))
    .optional(),
  expiredCandidates: z.array(z.object({ instanceId: z.string(), action: z.string() })).optional(),
  note: z.string().optional(),
});
const ReconcileSummarySchema = z.object({
  status: z.enum(['not-configured', 'reconciled', 'already-reconciled', 'not-reconciled']),
  state: z.string().optional(),
  serialBefore: z.string().optional(),
  serialAfter: z.string().optional(),
  backupKey: z.string().optional(),
  stillMentioning: z.array(z.string()).optional(),
  warnings: z.array(z.string()).optional(),
  reason: z.string().optional(),
  command: z.string().optional(),
});
type ReconcileSummary = z.infer<typeof ReconcileSummarySchema>;
const ReadinessSummarySchema = z.object({
  status: z.string().optional(),
  exitCode: z.number().optional(),
  readyAt: z.iso.datetime().optional(),
});
/** A command step whose await state recorded success (`$.prepare.result`, `$.certificate.result`). */
const CommandSentSchema = z.object({ command: CommandRefSchema });
const ProbeSummarySchema = z.object({
  phase: z.string(),
  requests: z.number(),
  failures: z.number(),
  done: z.boolean(),
});

export interface FinishResult {
  readonly succeeded: boolean;
  readonly outcome: Outcome;
  /** For the Fail state's ErrorPath/CausePath when the run did not succeed. */
  readonly error?: string;
  readonly cause?: string;
  readonly recordKey: string;
  /** The outcome message, for AnnounceOutcome's `sns:publish` (Publish's own member names). */
  readonly announcement: ComposedMessage;
}

export interface FinishClients {
  readonly s3: S3Client;
  readonly ssm: SSMClient;
  readonly sns: SNSClient;
  /** Where the run's metrics go (EMF on stdout in Lambda); none are emitted without it. */
  readonly metrics?: MetricsSink;
  /** For the `Replacement Finished` event on the Understudy bus. */
  readonly events?: EventBridgeClient;
}

export interface FinishEnv {
  readonly parameterPrefix: string;
  readonly runsBucket: string;
  readonly topicArn: string;
  readonly eventBusName?: string;
}

const CAUSE_LIMIT = 4_000;
const SUCCESSFUL: readonly Outcome[] = ['replaced', 'rolled-back-by-request', 'no-op', 'dry-run'];

const pick = <S extends z.ZodType>(schema: S, value: unknown): z.infer<S> | undefined => {
  const parsed = schema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
};

/** The human part of a caught error; Lambda errors arrive as `{"errorType","errorMessage","trace"}` text. */
export const causeText = (caught: CaughtError | undefined): string | undefined => {
  if (caught?.Cause === undefined) return undefined;
  let text = caught.Cause;
  try {
    const parsed = JSON.parse(caught.Cause) as { errorMessage?: unknown };
    if (typeof parsed?.errorMessage === 'string') text = parsed.errorMessage;
  } catch {
    // A plain-text cause (States.Timeout, SendTaskFailure) is used as it is.
  }
  return text.length > CAUSE_LIMIT ? `${text.slice(0, CAUSE_LIMIT)}…` : text;
};

/** Fail AWS calls as Transient: Finish is idempotent, so a retry is always safe and may succeed. */
const transient = (operation: string, error: unknown): UnderstudyError =>
  new UnderstudyError(
    ErrorNames.Transient,
    `${operation} failed: ${describeAwsError(error)}${isTransient(error) ? ' (temporary AWS failure)' : '; check the finish function role'}`,
    { cause: error },
  );

interface Decision {
  readonly outcome: Outcome;
  readonly error?: string;
  readonly cause?: string;
  readonly summary: string;
  readonly warnings: string[];
}

interface Facts {
  readonly target: string;
  readonly plan?: Plan;
  readonly candidate?: string;
  readonly error?: CaughtError;
  readonly rollback?: z.infer<typeof RollbackSummarySchema>;
  readonly rollbackError?: CaughtError;
  readonly retire?: z.infer<typeof RetireSummarySchema>;
  readonly retireError?: CaughtError;
  readonly reconcile?: ReconcileSummary;
  readonly reconcileError?: CaughtError;
  /** The commands that reconcile the Terraform state by hand, for when the step itself crashed. */
  readonly manualReconcile?: string;
  /** The ID of the Terraform lock this execution takes, should a crashed step have left it. */
  readonly reconcileLockId?: string;
}

export const decideOutcome = (f: Facts): Decision => {
  const failure = f.error ? `${f.error.Error}: ${causeText(f.error) ?? 'no details'}` : undefined;
  const failedWith = (cause: string, summary = `${f.target}: failed: ${cause}`): Decision => ({
    outcome: 'failed',
    error: f.error?.Error ?? 'Failed',
    cause,
    summary,
    warnings: [],
  });
  const manual = (cause: string): Decision => ({
    outcome: 'manual-action-needed',
    error: 'ManualActionNeeded',
    cause,
    summary: `${f.target}: manual action needed: ${cause}`,
    warnings: [],
  });

  if (!f.plan) {
    const cause = failure ?? 'the run stopped before preflight produced a plan';
    return failedWith(cause, `${f.target}: nothing was changed; ${cause}`);
  }
  const old = f.plan.old.instanceId;
  if (f.plan.action === 'no-op') {
    return {
      outcome: 'no-op',
      summary: `${f.target}: ${old} already runs ${f.plan.image.imageId}; nothing to do`,
      warnings: [],
    };
  }
  if (f.plan.action === 'dry-run') {
    return {
      outcome: 'dry-run',
      summary: `${f.target}: dry run; the plan is in this message and the run record`,
      warnings: [],
    };
  }
  if (f.plan.action === 'rollback') return decideRollbackByRequest({ ...f, plan: f.plan }, failure);
  if (f.rollback) {
    const reason = failure ?? 'the replacement failed';
    if (f.rollback.outcome === 'rolled-back') {
      const health =
        f.plan.baseline.healthy === false
          ? 'the service was already unhealthy before the run'
          : f.rollback.serviceHealthy === false
            ? 'the service does not answer healthy after the rollback'
            : 'the service answers healthy';
      const cause = `${reason}; the Elastic IP is back on ${f.rollback.eipInstanceId ?? old} and ${health}`;
      return {
        outcome: 'rolled-back',
        error: 'RolledBack',
        cause,
        summary: `${f.target}: rolled back: ${cause}`,
        warnings: [],
      };
    }
    const commands = f.rollback.commands ?? [];
    return manual(
      `${reason}; the rollback could not restore service by itself${commands.length ? `, run: ${commands.join(' && ')}` : ''}`,
    );
  }
  if (f.rollbackError) {
    return manual(
      `${failure ?? 'the replacement failed'}, then the rollback failed (${f.rollbackError.Error}: ${causeText(f.rollbackError) ?? 'no details'}); ` +
        `check where Elastic IP ${f.plan.eip.allocationId} points and move it back to ${old} with ` +
        `aws ec2 associate-address --allocation-id ${f.plan.eip.allocationId} --instance-id ${old} --allow-reassociation`,
    );
  }
  if (f.retire || f.retireError) {
    const warnings: string[] = [];
    if (f.retireError) {
      warnings.push(
        `the old instance ${old} could not be retired (${f.retireError.Error}: ${causeText(f.retireError) ?? 'no details'}); stop it by hand once you no longer need it for a rollback`,
      );
    }
    if (f.retire?.note) warnings.push(f.retire.note);
    warnings.push(...(f.reconcile?.warnings ?? []));
    const stateWarning = terraformWarning(f);
    if (stateWarning) warnings.push(stateWarning);
    return {
      outcome: 'replaced',
      summary: `${f.target}: replaced ${old} with ${f.candidate ?? 'the new instance'} on ${f.plan.image.imageId}`,
      warnings,
    };
  }
  return failedWith(failure ?? 'the run ended without a retire or rollback record');
};

/**
 * A rollback within the window: success is the retired box serving again and the newer one retired; a
 * failure on the way was reverted (the Elastic IP back on the box that served before), so the request
 * failed and nothing changed, unless the revert itself needs a human.
 */
const decideRollbackByRequest = (f: Facts & { plan: Plan }, failure: string | undefined): Decision => {
  const restored = f.plan.restore?.instanceId ?? f.candidate ?? 'the retired server';
  const newer = f.plan.old.instanceId;
  const manualAction = (cause: string): Decision => ({
    outcome: 'manual-action-needed',
    error: 'ManualActionNeeded',
    cause,
    summary: `${f.target}: manual action needed: ${cause}`,
    warnings: [],
  });
  if (f.rollback) {
    const reason = failure ?? 'the rollback failed';
    if (f.rollback.outcome === 'rolled-back') {
      const cause = `rollback to ${restored} failed: ${reason}; the Elastic IP stays on ${newer}, and ${restored} is stopped in its window again`;
      return {
        outcome: 'failed',
        error: f.error?.Error ?? 'RollbackFailed',
        cause,
        summary: `${f.target}: ${cause}`,
        warnings: [],
      };
    }
    const commands = f.rollback.commands ?? [];
    return manualAction(
      `rollback to ${restored} failed (${reason}) and could not be undone by itself${commands.length ? `, run: ${commands.join(' && ')}` : ''}`,
    );
  }
  if (f.rollbackError) {
    return manualAction(
      `rollback to ${restored} failed (${failure ?? 'no details'}), then undoing it failed (${f.rollbackError.Error}: ${causeText(f.rollbackError) ?? 'no details'}); ` +
        `check where Elastic IP ${f.plan.eip.allocationId} points: aws ec2 describe-addresses --allocation-ids ${f.plan.eip.allocationId}`,
    );
  }
  if (f.retire || f.retireError) {
    const warnings: string[] = [];
    if (f.retireError) {
      warnings.push(
        `the newer instance ${newer} could not be retired (${f.retireError.Error}: ${causeText(f.retireError) ?? 'no details'}); stop it by hand once you no longer need it`,
      );
    }
    if (f.retire?.note) warnings.push(f.retire.note);
    warnings.push(...(f.reconcile?.warnings ?? []));
    const stateWarning = terraformWarning(f);
    if (stateWarning) warnings.push(stateWarning);
    return {
      outcome: 'rolled-back-by-request',
      summary: `${f.target}: rolled back from ${newer} to ${restored} (${f.plan.image.imageId}) on request; ${newer} is retired`,
      warnings,
    };
  }
  return {
    outcome: 'failed',
    error: f.error?.Error ?? 'Failed',
    cause: failure ?? 'the rollback ended without a retire or revert record',
    summary: `${f.target}: rollback to ${restored} failed: ${failure ?? 'no details'}`,
    warnings: [],
  };
};

/**
 * "State not reconciled": the server is replaced and healthy, but the Terraform state still names the
 * old one. The warning carries the reason, the backup and the exact commands that finish the job.
 */
const STATE_NOT_RECONCILED = 'Terraform state not reconciled';

const terraformWarning = (f: Facts): string | undefined => {
  const r = f.reconcile;
  if (r?.status === 'not-reconciled') {
    return (
      `${STATE_NOT_RECONCILED} (${r.state ?? 'state'}): ${r.reason ?? 'no details'}` +
      `${r.backupKey ? `; backup of the state before the attempt: ${r.backupKey}` : ''}` +
      `${r.command ? `; finish by hand with: ${r.command}` : ''}`
    );
  }
  if (f.reconcileError) {
    return (
      `${STATE_NOT_RECONCILED}: the reconcile step failed (${f.reconcileError.Error}: ${causeText(f.reconcileError) ?? 'no details'})` +
      `${f.manualReconcile ? `; finish by hand with: ${f.manualReconcile}` : ''}` +
      `${f.reconcileLockId ? `; if the state is still locked by this run, release it with: terraform force-unlock ${f.reconcileLockId}` : ''}`
    );
  }
  return undefined;
};

const writeRecord = async (
  s3: S3Client,
  bucket: string,
  key: string,
  record: Record<string, unknown>,
): Promise<void> => {
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: JSON.stringify(record, null, 2),
        ContentType: 'application/json',
      }),
    );
  } catch (error) {
    throw transient(`PutObject s3://${bucket}/${key}`, error);
  }
};

const resultOf = (
  decision: Pick<Decision, 'outcome' | 'error' | 'cause'>,
  recordKey: string,
  announcement: ComposedMessage,
): FinishResult => {
  const succeeded = SUCCESSFUL.includes(decision.outcome);
  return {
    succeeded,
    outcome: decision.outcome,
    ...(succeeded ? {} : { error: decision.error ?? 'Failed', cause: decision.cause ?? decision.outcome }),
    recordKey,
    announcement,
  };
};

/**
 * Whether this run sent certbot to Let's Encrypt: http-01 once the certificate command went out after
 * the switch, dns-01 once Prepare's (certbot is its first line). Sent, not succeeded: a command that
 * failed on a later line (nginx, the local checks) may still have obtained a certificate, and counting
 * too many errs on the safe side of the limit. restore and none never request one. Preflight counts
 * these records against the limit of 5 per identical set of names per week.
 */
export const certificateRequested = (
  plan: Plan,
  state: Pick<FinishInput, 'certificate' | 'prepare'>,
): boolean => {
  switch (plan.target.tls.mode) {
    case 'http-01':
      return pick(CommandSentSchema, state.certificate) !== undefined;
    case 'dns-01':
      return pick(CommandSentSchema, state.prepare) !== undefined;
    default:
      return false;
  }
};

/**
 * Stamped with the time Finish writes the record, at or after the request itself: the window it opens
 * in the rate-limit guard closes no earlier than Let's Encrypt's own.
 */
const issuance = (plan: Plan, at: string) => ({ requested: true, names: [plan.target.domain], at });

/** When the probe's phases began, for the message's timeline (read leniently, like every key here). */
const ProbeTimesSchema = z.object({
  startedAt: z.string().optional(),
  phaseStartedAt: z.string().optional(),
});

const secondsBetween = (from: string | undefined, to: string | undefined): number | undefined => {
  const ms = from === undefined || to === undefined ? Number.NaN : Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) && ms >= 0 ? Math.round(ms / 1000) : undefined;
};

/** The run's metrics, from the same allow-listed facts as its message. */
const measure = (r: OutcomeReport, f: Facts, execution: string) => ({
  target: r.target,
  outcome: r.outcome,
  execution,
  ...(r.outcome === 'replaced' ? { replacementSeconds: secondsBetween(r.startedAt, r.finishedAt) } : {}),
  ...(r.probe ? { probeFailedRequests: r.probe.failures } : {}),
  ...(r.probe?.phase === 'bake'
    ? { timeToHealthySeconds: secondsBetween(r.switchedAt ?? r.probe.startedAt, r.probe.phaseStartedAt) }
    : {}),
  // Only replacements that launched a candidate could have rolled back. A rollback by request is the
  // operator's decision, not a failed image: it counts in OutcomeRolledBackByRequest (or OutcomeFailed
  // when it was undone), never in the Rollbacks alarm.
  ...(f.candidate && f.plan?.action !== 'rollback'
    ? { rolledBack: f.rollback !== undefined || f.rollbackError !== undefined }
    : {}),
  ...(f.reconcile?.status === 'not-reconciled' || f.reconcileError
    ? { reconcileFailed: true }
    : f.reconcile?.status === 'reconciled' || f.reconcile?.status === 'already-reconciled'
      ? { reconcileFailed: false }
      : {}),
});

/**
 * Hooks are not undone: when the afterSwitch hook for the box losing traffic was sent and the run then
 * put traffic back on that box (a replacement rolled back, or a rollback on request undone), whatever
 * the hook stopped there (cron, queue workers) is still stopped on the box that serves again.
 */
const undoneHookWarning = (
  state: FinishInput,
  outcome: Outcome,
  plan: Plan | undefined,
): string | undefined => {
  if (!plan) return undefined;
  const hookRuns = state.hookRuns ?? {};
  const servesAgain =
    (plan.action === 'replace' && outcome === 'rolled-back' && hookRuns.afterSwitchOld !== undefined) ||
    (plan.action === 'rollback' && outcome === 'failed' && hookRuns.afterSwitchNewer !== undefined);
  return servesAgain
    ? `the afterSwitch.oldBox hook ran on ${plan.old.instanceId} before traffic went back to it: start again what it stopped there (cron jobs, workers)`
    : undefined;
};

export const finish = async (
  clients: FinishClients,
  env: FinishEnv,
  state: FinishInput,
): Promise<FinishResult> => {
  const { execution } = state;
  const run = (typeof state.run === 'object' && state.run !== null ? state.run : {}) as Record<
    string,
    unknown
  >;
  const plan = pick(PlanSchema, state.run);
  const input = ExecutionInputSchema.safeParse(state.input);
  const rawTarget =
    plan?.target.name ?? (input.success ? input.data.target : (state.input as { target?: unknown })?.target);
  // The name becomes part of an S3 key: only a valid target name is used as it is.
  const target = pick(TargetNameSchema, rawTarget) ?? '_invalid-target';
  const launched = pick(LaunchResultSchema, state.launch);
  const candidate = launched?.instanceId;
  correlate({ target, execution: execution.name, instance: candidate });

  const facts: Facts = {
    target,
    ...(plan ? { plan } : {}),
    ...(candidate ? { candidate } : {}),
    error: pick(CaughtErrorSchema, state.error),
    rollback: pick(RollbackSummarySchema, state.rollback),
    rollbackError: pick(CaughtErrorSchema, state.rollbackError),
    retire: pick(RetireSummarySchema, state.retire),
    retireError: pick(CaughtErrorSchema, state.retireError),
    reconcile: pick(ReconcileSummarySchema, state.reconcile),
    reconcileError: pick(CaughtErrorSchema, state.reconcileError),
    ...(plan?.target.terraform && candidate
      ? {
          reconcileLockId: lockIdFor(execution.arn),
          manualReconcile: manualReconcileCommand({
            terraform: plan.target.terraform,
            region: await clients.sns.config.region(),
            newInstanceId: candidate,
            oldInstanceId: plan.old.instanceId,
            allocationId: plan.eip.allocationId,
            runId: execution.arn,
          }),
        }
      : {}),
  };
  const decision = decideOutcome(facts);
  const warnings = [...decision.warnings];
  const hookWarning = undoneHookWarning(state, decision.outcome, plan);
  if (hookWarning) warnings.push(hookWarning);

  // Release only the lock this execution took: the state says which, the lock object says whose it is now.
  const lock = pick(LockSchema, run.lock);
  let lockResult: 'released' | 'absent' | 'not-ours' | 'unreadable' | 'none' = 'none';
  if (lock && lock.owner === execution.arn) {
    try {
      lockResult = await releaseLock(clients.s3, lock);
    } catch (error) {
      if (isUnderstudyError(error, ErrorNames.Transient)) throw error;
      // A lock Finish cannot read or delete must not cost the run its record and its outcome message.
      lockResult = 'unreadable';
      warnings.push(
        `the lock s3://${lock.bucket}/${lock.key} could not be released (${describeAwsError(error)}); inspect and delete it by hand`,
      );
    }
    if (lockResult === 'not-ours')
      logger.warn('the target lock now belongs to another execution; left in place');
  } else if (lock) {
    lockResult = 'not-ours';
    logger.warn('the state names a lock owned by another execution; left in place');
  } else if (!plan && target !== '_invalid-target') {
    // Preflight may have taken the lock and then failed (a timeout after the lock write) without
    // handing it on: the lock object itself says whether it is this execution's.
    const orphan = {
      bucket: env.runsBucket,
      key: runKeys.lock(target),
      owner: execution.arn,
      leaseSeconds: 0,
    };
    try {
      const released = await releaseLock(clients.s3, orphan);
      if (released === 'released') lockResult = 'released';
    } catch (error) {
      if (isUnderstudyError(error, ErrorNames.Transient)) throw error;
      warnings.push(
        `could not check whether this run left the lock s3://${orphan.bucket}/${orphan.key} (${describeAwsError(error)}); inspect it by hand`,
      );
    }
  }

  // The transfer holds a private key: it goes now, not when the lifecycle backstop expires it.
  if (plan?.action === 'replace' && plan.target.tls.mode === 'restore') {
    const prefix = `s3://${env.runsBucket}/${transferPrefix(execution.name)}`;
    try {
      const deleted = await deleteTransferObjects(clients.s3, env.runsBucket, execution.name);
      logger.info('deleted the certificate transfer', { objects: deleted.length });
    } catch (error) {
      warnings.push(
        `could not delete the certificate transfer under ${prefix} (${describeAwsError(error)}); delete it by hand (a lifecycle rule expires it after a day)`,
      );
    }
  }

  if (candidate) {
    const names = parameterNames(env.parameterPrefix);
    try {
      // Absent names come back in InvalidParameters, not as an error: a retry is a no-op.
      await clients.ssm.send(
        // The approval gate's token (if the target has one) is this run's too: one run per target at a time.
        new DeleteParametersCommand({
          Names: [names.token(candidate), names.earlyEvent(candidate), names.approval(target)],
        }),
      );
    } catch (error) {
      if (isTransient(error)) throw transient('DeleteParameters', error);
      warnings.push(
        `could not delete the readiness parameters of ${candidate} (${describeAwsError(error)}); delete them by hand`,
      );
    }
  }

  const recordKey = runKeys.record(target, execution.name);
  const sw = pick(SwitchResultSchema, state.switch);
  const readiness = pick(ReadinessSummarySchema, state.readiness);
  const probe = pick(ProbeSummarySchema, state.probe);
  // The timeline's dated moments, the same in the run record and the message's JSON.
  const moments = {
    launchedAt: launched?.launchedAt,
    readyAt:
      plan?.action === 'rollback' ? pick(RestoredResultSchema, state.restore)?.readyAt : readiness?.readyAt,
  };
  const planSummary = plan && {
    action: plan.action,
    imageId: plan.image.imageId,
    architecture: plan.image.architecture,
    oldInstanceId: plan.old.instanceId,
    instanceType: plan.old.instanceType,
    allocationId: plan.eip.allocationId,
    publicIp: plan.eip.publicIp,
    needsPublicIp: plan.needsPublicIp,
    baseline: plan.baseline,
    ...(plan.lock?.tookOverFrom ? { lockTakenOverFrom: plan.lock.tookOverFrom } : {}),
    ...(plan.lockHeldBy ? { lockHeldBy: plan.lockHeldBy } : {}),
    ...(plan.target.tls.mode ? { tlsMode: plan.target.tls.mode } : {}),
    ...(plan.restore ? { restore: plan.restore } : {}),
  };
  const finishedAt = new Date().toISOString();
  const record: Record<string, unknown> = {
    version: 1,
    target,
    execution: {
      name: execution.name,
      arn: execution.arn,
      startTime: execution.startTime,
      redriveCount: execution.redriveCount,
    },
    input: input.success ? input.data : { invalid: true, problems: formatIssues(input.error, 'input') },
    outcome: decision.outcome,
    succeeded: SUCCESSFUL.includes(decision.outcome),
    ...(decision.error ? { error: decision.error, cause: decision.cause } : {}),
    summary: decision.summary,
    plan: planSummary,
    candidateInstanceId: candidate,
    ...moments,
    readiness: readiness && { status: readiness.status, exitCode: readiness.exitCode },
    switch: sw && { moved: sw.moved, at: sw.at, previousInstanceId: sw.previousInstanceId },
    probe,
    rollback: facts.rollback,
    retire: facts.retire,
    terraform: facts.reconcile && {
      status: facts.reconcile.status,
      state: facts.reconcile.state,
      serialBefore: facts.reconcile.serialBefore,
      serialAfter: facts.reconcile.serialAfter,
      backupKey: facts.reconcile.backupKey,
      stillMentioning: facts.reconcile.stillMentioning,
    },
    caught: facts.error && { error: facts.error.Error, cause: causeText(facts.error) },
    certificate: plan && certificateRequested(plan, state) ? issuance(plan, finishedAt) : undefined,
    lock: lockResult,
    warnings,
    finishedAt,
  };
  await writeRecord(clients.s3, env.runsBucket, recordKey, record);

  const recordUri = `s3://${env.runsBucket}/${recordKey}`;
  try {
    for (const warning of warnings) {
      await publish(clients.sns, env.topicArn, {
        kind: 'warning',
        event: warning.startsWith(STATE_NOT_RECONCILED) ? 'state-not-reconciled' : 'finish-warning',
        target,
        execution: execution.name,
        summary: warning,
      });
    }
  } catch (error) {
    throw transient('Publish', error);
  }
  const report: OutcomeReport = {
    target,
    outcome: decision.outcome,
    summary: decision.summary,
    executionArn: execution.arn,
    startedAt: execution.startTime,
    finishedAt,
    ...(plan ? { action: plan.action, imageId: plan.image.imageId, oldInstanceId: plan.old.instanceId } : {}),
    ...(plan?.eip.publicIp ? { publicIp: plan.eip.publicIp } : {}),
    ...(candidate ? { newInstanceId: candidate } : {}),
    ...(moments.launchedAt ? { launchedAt: moments.launchedAt } : {}),
    ...(readiness?.status ? { readiness: readiness.status } : {}),
    ...(moments.readyAt ? { readyAt: moments.readyAt } : {}),
    ...(sw?.moved ? { switchedAt: sw.at } : {}),
    ...(probe ? { probe: { ...pick(ProbeTimesSchema, state.probe), ...probe } } : {}),
    ...(facts.rollback ? { rollback: facts.rollback } : {}),
    ...(facts.retire ? { retireAfter: facts.retire.retireAfter } : {}),
    ...(facts.reconcile ? { terraform: facts.reconcile } : {}),
    ...(facts.rollback?.commands?.length ? { commands: facts.rollback.commands } : {}),
    warnings,
    record: recordUri,
  };
  const announcement = composeMessage({
    kind: 'outcome',
    event: decision.outcome,
    target,
    execution: execution.name,
    summary: decision.summary,
    headline: outcomeHeadline(report),
    text: outcomeText(report),
    details: {
      ...(decision.error ? { error: decision.error, cause: decision.cause } : {}),
      ...(facts.rollback?.commands?.length ? { commands: facts.rollback.commands } : {}),
      ...(planSummary ? { plan: planSummary } : {}),
      ...(candidate ? { candidateInstanceId: candidate } : {}),
      ...(warnings.length ? { warnings } : {}),
      startedAt: execution.startTime,
      finishedAt,
      ...(report.launchedAt ? { launchedAt: report.launchedAt } : {}),
      ...(report.readyAt ? { readyAt: report.readyAt } : {}),
      ...(report.switchedAt ? { switchedAt: report.switchedAt } : {}),
      ...(report.probe ? { probe: report.probe } : {}),
      ...(report.terraform
        ? {
            terraform: {
              status: report.terraform.status,
              serialBefore: report.terraform.serialBefore,
              serialAfter: report.terraform.serialAfter,
              backupKey: report.terraform.backupKey,
            },
          }
        : {}),
      console: executionConsoleLink(execution.arn),
      ...(decision.outcome === 'replaced'
        ? { rollbackCommand: rollbackCommands(target, execution.arn)[0] }
        : {}),
      record: recordUri,
    },
  });
  // Last, after everything that can throw: a retried Finish must not count the run twice.
  if (clients.metrics) emitRunMetrics(clients.metrics, measure(report, facts, execution.name));
  // Phase events tell the story of a replacement or a rollback within the window: a run that never
  // started one (refused, no-op, dry run) has none.
  const told = plan?.action === 'replace' || plan?.action === 'rollback';
  const bus = told ? phaseBus(clients.events, env.eventBusName) : undefined;
  await putPhaseEvent(bus, 'finished', {
    target,
    execution: execution.name,
    summary: decision.summary,
    ...(plan ? { action: plan.action } : {}),
    outcome: decision.outcome,
    succeeded: SUCCESSFUL.includes(decision.outcome),
    ...(report.oldInstanceId ? { oldInstanceId: report.oldInstanceId } : {}),
    ...(candidate ? { newInstanceId: candidate } : {}),
    ...(decision.error ? { error: decision.error } : {}),
    record: recordUri,
  });
  logger.info('run finished', { outcome: decision.outcome, lock: lockResult });
  return resultOf(decision, recordKey, announcement);
};
