import { z } from 'zod';
import { ImageIdSchema, TargetSchema, TRIGGER_KINDS } from './config';

/**
 * Shapes that cross the Step Functions boundary. Every handler parses the slice of the state it reads
 * with these, so a malformed state fails loudly at the boundary instead of deep in a step.
 *
 * The state document grows as the run goes on; each Task writes its result under its own key
 * (ResultPath), never over another step's:
 *   $.input      execution input (contract, design §3)
 *   $.execution  Step Functions context (arn, name, redriveCount, startTime)
 *   $.run        preflight's plan (target config, image, old instance, EIP, baseline, lock)
 *   $.launch     candidate instance
 *   $.readiness  agent report
 *   $.prepare    local app check on the candidate
 *   $.switch     EIP move record
 *   $.certificate http-01 issuance
 *   $.probe      probe through the EIP; $.bake the bake loop's counters
 *   $.error      the caught error that sent the run to Rollback/Finish
 *   $.rollback, $.retire  their records
 */

/** Execution input (contract): anything else is refused with the field named. */
export const ExecutionInputSchema = z
  .object({
    target: z.string().min(1, 'name the target to replace'),
    imageId: ImageIdSchema.optional(),
    action: z.enum(['replace', 'rollback']).default('replace'),
    dryRun: z.boolean().default(false),
    reason: z.string().max(256, 'keep the reason under 256 characters').optional(),
    /** Set by automatic triggers only (lambdas/trigger): holds the run to the maintenance windows. */
    trigger: z.enum(TRIGGER_KINDS, { error: `use one of ${TRIGGER_KINDS.join(', ')}` }).optional(),
  })
  .strict();
export type ExecutionInput = z.infer<typeof ExecutionInputSchema>;

export const ExecutionContextSchema = z.object({
  arn: z.string().min(1),
  name: z.string().min(1),
  redriveCount: z.number().int().min(0).default(0),
  startTime: z.string().min(1),
});
export type ExecutionContext = z.infer<typeof ExecutionContextSchema>;

export const LockSchema = z.object({
  bucket: z.string(),
  key: z.string(),
  owner: z.string(),
  leaseSeconds: z.number(),
  /** Set when this run took over a lease that had expired. */
  tookOverFrom: z.string().optional(),
});
export type Lock = z.infer<typeof LockSchema>;

export const OldInstanceSchema = z.object({
  instanceId: z.string(),
  imageId: z.string(),
  instanceType: z.string(),
  privateIpAddress: z.string().optional(),
  subnetId: z.string(),
  availabilityZone: z.string().optional(),
});

export const BaselineSchema = z.object({
  healthy: z.boolean(),
  status: z.number().optional(),
  detail: z.string(),
});
export type Baseline = z.infer<typeof BaselineSchema>;

/** The retired box a rollback brings back, as preflight found it (design §2.10). */
export const RestoreTargetSchema = z.object({
  instanceId: z.string(),
  imageId: z.string(),
  state: z.string(),
  retireAfter: z.string(),
  /** Its run's schedule that terminates it at `retireAfter`. */
  scheduleName: z.string(),
});
export type RestoreTarget = z.infer<typeof RestoreTargetSchema>;

export const PlanSchema = z.object({
  /**
   * `replace`: go on; `no-op`: the box already runs the image; `dry-run`: print and stop; `rollback`:
   * bring back the retired box named in `restore` (the run's `old` is then the box serving now).
   */
  action: z.enum(['replace', 'no-op', 'dry-run', 'rollback']),
  target: TargetSchema,
  image: z.object({ imageId: z.string(), architecture: z.string(), rootDeviceName: z.string() }),
  old: OldInstanceSchema,
  eip: z.object({
    allocationId: z.string(),
    publicIp: z.string(),
    associationId: z.string().optional(),
  }),
  baseline: BaselineSchema,
  /** Launch the candidate with a public IP because the subnet has no other route out. */
  needsPublicIp: z.boolean(),
  lock: LockSchema.optional(),
  /** Dry run only: who holds the target's lock right now (never this run's own lock, so Finish leaves it alone). */
  lockHeldBy: z.object({ executionName: z.string(), owner: z.string(), expiresAt: z.string() }).optional(),
  reason: z.string().optional(),
  /** Rollback within the window (and its dry run): the retired box to bring back. */
  restore: RestoreTargetSchema.optional(),
});
export type Plan = z.infer<typeof PlanSchema>;

export const LaunchResultSchema = z.object({
  instanceId: z.string(),
  clientToken: z.string(),
  privateIpAddress: z.string().optional(),
  /** False when the old box had source/destination checking off (NAT/router); await-running applies it. */
  sourceDestCheck: z.boolean().optional(),
  /**
   * When the box began to serve the run: EC2's launch time of the candidate, or, for a rollback, when
   * StartRetired found or started the retired box. Optional: a state from before the field lacks it.
   */
  launchedAt: z.iso.datetime().optional(),
});
export type LaunchResult = z.infer<typeof LaunchResultSchema>;

export const SwitchResultSchema = z.object({
  moved: z.boolean(),
  associationId: z.string().optional(),
  previousInstanceId: z.string().optional(),
  previousAssociationId: z.string().optional(),
  at: z.string(),
});
export type SwitchResult = z.infer<typeof SwitchResultSchema>;

export const CommandRefSchema = z.object({
  commandId: z.string(),
  instanceId: z.string(),
});

/** `$.restore`: the restored box's local check, and when the box was found up (running, checks passed, agent Online). */
export const RestoredResultSchema = z.object({ command: CommandRefSchema, readyAt: z.iso.datetime() });
export type RestoredResult = z.infer<typeof RestoredResultSchema>;

/** Caught error as Step Functions writes it with a Catch ResultPath. */
export const CaughtErrorSchema = z.object({
  Error: z.string(),
  Cause: z.string().optional(),
});
export type CaughtError = z.infer<typeof CaughtErrorSchema>;

/** The document every step sees; later keys are optional because earlier steps may have failed. */
export const RunStateSchema = z.object({
  input: ExecutionInputSchema,
  execution: ExecutionContextSchema,
  run: PlanSchema,
  launch: LaunchResultSchema.optional(),
  switch: SwitchResultSchema.optional(),
  error: CaughtErrorSchema.optional(),
});
export type RunState = z.infer<typeof RunStateSchema>;

/** The state of a rollback within the window: its plan names the retired box to bring back. */
export const RollbackRunStateSchema = RunStateSchema.extend({
  run: PlanSchema.extend({ action: z.literal('rollback'), restore: RestoreTargetSchema }),
});

/**
 * The input of a `.waitForTaskToken` step after Launch (readiness, approval): the token it parks for
 * whoever completes the task, and the run's state.
 */
export const CallbackTaskInputSchema = z.object({
  taskToken: z.string().min(1),
  state: RunStateSchema.extend({ launch: LaunchResultSchema }),
});
export type CallbackTaskInput = z.infer<typeof CallbackTaskInputSchema>;

/** The readiness agent's event detail (source `understudy.agent`). */
export const AgentEventDetailSchema = z.object({
  instanceId: z.string().regex(/^i-[0-9a-f]{8,17}$/),
  status: z.string().optional(),
  exitCode: z.number().int().optional(),
  errors: z.array(z.string()).default([]),
});

/**
 * What the agent read from IMDS for its final event: `dynamic/instance-identity/document` and
 * `.../signature`, byte for byte (the signature is over the document's exact bytes). The signal
 * function checks them (lambdas/signal/identity.ts); progress events carry none.
 */
export const AgentIdentitySchema = z.object({
  document: z.string().min(1).max(8_192),
  signature: z.string().min(1).max(4_096),
});
export type AgentIdentity = z.infer<typeof AgentIdentitySchema>;

export const AgentEventSchema = z.object({
  source: z.literal('understudy.agent'),
  'detail-type': z.enum(['Instance Ready', 'Instance Failed', 'Instance Progress']),
  detail: AgentEventDetailSchema.extend({ identity: AgentIdentitySchema.optional() }),
  /** Set by EventBridge, not by the sender: the account and Region the event was put in. */
  account: z.string().regex(/^\d{12}$/),
  region: z.string().regex(/^[a-z]{2}(-[a-z0-9]+)+-\d+$/),
  time: z.string().optional(),
});
export type AgentEvent = z.infer<typeof AgentEventSchema>;
