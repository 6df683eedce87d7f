import type { S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import { z } from 'zod';
import { ErrorNames, UnderstudyError } from '../shared/errors';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { publishQuietly } from '../shared/notify';
import { type ProbeVerdict, probeOnce, sleep } from '../shared/probe';
import { BaselineSchema, RunStateSchema } from '../shared/schemas';

/**
 * Probe through the EIP after the switch, as the state machine's loop body: `verify` until the target's
 * run of consecutive successes (or its deadline), then `bake` for bakeSeconds, failing on a run of
 * consecutive failures. Each invocation works for about a minute and returns its counters; the
 * ProbeDone Choice calls it again until `done`. Timing is read from Date.now(), never counted in
 * iterations, so a slow answer or a retried invocation cannot stretch the deadline.
 */

export const ProbeStateSchema = z.object({
  phase: z.enum(['verify', 'bake']),
  startedAt: z.string(),
  phaseStartedAt: z.string(),
  consecutiveSuccesses: z.number().int().min(0),
  consecutiveFailures: z.number().int().min(0),
  requests: z.number().int().min(0),
  failures: z.number().int().min(0),
  done: z.boolean(),
  /** The latest verdict, for the next invocation's error message. */
  last: BaselineSchema.optional(),
});
export type ProbeState = z.infer<typeof ProbeStateSchema>;

export const ProbeInputSchema = RunStateSchema.extend({ probe: ProbeStateSchema.optional() });
export type ProbeInput = z.infer<typeof ProbeInputSchema>;

/** How long one invocation keeps probing before it hands its state back to the state machine. */
export const INVOCATION_BUDGET_MS = 60_000;

export interface ProbeClients {
  readonly s3: S3Client;
  readonly sns: SNSClient;
}

export interface ProbeOptions {
  readonly topicArn: string;
  readonly budgetMs?: number;
}

const describeVerdict = (verdict: ProbeVerdict | undefined): string =>
  verdict === undefined
    ? 'no answer yet'
    : `${verdict.status !== undefined ? `HTTP ${verdict.status}: ` : ''}${verdict.detail}`;

export const probe = async (
  clients: ProbeClients,
  options: ProbeOptions,
  state: ProbeInput,
): Promise<ProbeState> => {
  const target = state.run.target;
  const { health } = target;
  const publicIp = state.run.eip.publicIp;
  correlate({ target: target.name, execution: state.execution.name, instance: state.launch?.instanceId });
  await renewHeldLock(clients.s3, state.run.lock);

  const invokedAt = Date.now();
  const budgetEnd = invokedAt + (options.budgetMs ?? INVOCATION_BUDGET_MS);
  const intervalMs = health.intervalSeconds * 1000;
  const now = new Date(invokedAt).toISOString();
  let s: ProbeState = state.probe ?? {
    phase: 'verify',
    startedAt: now,
    phaseStartedAt: now,
    consecutiveSuccesses: 0,
    consecutiveFailures: 0,
    requests: 0,
    failures: 0,
    done: false,
  };
  if (s.done) return s;

  const verifyDeadline = Date.parse(s.startedAt) + health.deadlineSeconds * 1000;

  for (;;) {
    if (s.phase === 'bake' && Date.now() >= Date.parse(s.phaseStartedAt) + health.bakeSeconds * 1000) {
      logger.info('bake period ended clean', { requests: s.requests, failures: s.failures });
      return { ...s, done: true };
    }

    const verdict = await probeOnce(target, publicIp);
    s = {
      ...s,
      requests: s.requests + 1,
      failures: s.failures + (verdict.healthy ? 0 : 1),
      consecutiveSuccesses: verdict.healthy ? s.consecutiveSuccesses + 1 : 0,
      consecutiveFailures: verdict.healthy ? 0 : s.consecutiveFailures + 1,
      last: {
        healthy: verdict.healthy,
        detail: verdict.detail,
        ...(verdict.status !== undefined ? { status: verdict.status } : {}),
      },
    };

    if (s.phase === 'verify') {
      if (s.consecutiveSuccesses >= health.consecutiveSuccesses) {
        const verifiedAt = new Date().toISOString();
        s = {
          ...s,
          phase: 'bake',
          phaseStartedAt: verifiedAt,
          consecutiveSuccesses: 0,
          consecutiveFailures: 0,
        };
        // The switch is verified; a lost progress message must not send it to rollback.
        await publishQuietly(
          clients.sns,
          options.topicArn,
          {
            kind: 'progress',
            event: 'verified',
            target: target.name,
            execution: state.execution.name,
            summary: `${target.domain} answered ${health.consecutiveSuccesses} times in a row through ${publicIp}; baking for ${health.bakeSeconds} s`,
            details: { instanceId: state.launch?.instanceId, publicIp, requests: s.requests },
          },
          'the verified notification',
        );
        if (health.bakeSeconds === 0) return { ...s, done: true };
      } else if (Date.now() >= verifyDeadline) {
        throw new UnderstudyError(
          ErrorNames.ProbeFailed,
          `${target.domain} through ${publicIp} did not answer healthy ${health.consecutiveSuccesses} times in a row within ` +
            `health.deadlineSeconds (${health.deadlineSeconds} s); last answer: ${describeVerdict(verdict)} (${s.failures} of ${s.requests} requests failed)`,
        );
      }
    } else if (s.consecutiveFailures >= health.bakeFailureThreshold) {
      throw new UnderstudyError(
        ErrorNames.BakeFailed,
        `${target.domain} through ${publicIp} failed ${s.consecutiveFailures} times in a row during the bake period ` +
          `(health.bakeFailureThreshold ${health.bakeFailureThreshold}); last answer: ${describeVerdict(verdict)}`,
      );
    }

    // Hand the state back rather than start a probe that would end past this invocation's budget.
    if (Date.now() + intervalMs >= budgetEnd) return s;
    await sleep(intervalMs);
  }
};
