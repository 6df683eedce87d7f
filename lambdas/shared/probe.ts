import type { TargetConfig } from './config';
import { httpGet, type ProbeResponse } from './http';

/**
 * Judges one answer of the service against the target's health settings: status, body, and (over
 * HTTPS) the certificate's remaining validity. Used for the baseline, the post-switch probe, the bake
 * period and the rollback's verification, so "healthy" means the same thing everywhere.
 */
export interface ProbeVerdict {
  readonly healthy: boolean;
  readonly status?: number;
  readonly detail: string;
}

export const schemeFor = (target: TargetConfig): 'http' | 'https' =>
  target.tls.mode === 'none' ? 'http' : 'https';

export const judge = (target: TargetConfig, response: ProbeResponse): ProbeVerdict => {
  const base = response.status !== undefined ? { status: response.status } : {};
  if (!response.ok) return { healthy: false, detail: response.error ?? 'no answer', ...base };
  if (response.status !== target.health.expectStatus) {
    return {
      healthy: false,
      detail: `status ${response.status}, expected ${target.health.expectStatus}`,
      ...base,
    };
  }
  if (
    target.health.bodyContains !== undefined &&
    !(response.body ?? '').includes(target.health.bodyContains)
  ) {
    return { healthy: false, detail: `body does not contain "${target.health.bodyContains}"`, ...base };
  }
  if (
    response.certificateDaysLeft !== undefined &&
    response.certificateDaysLeft < target.health.certificateMinDaysLeft
  ) {
    return {
      healthy: false,
      detail: `certificate expires in ${response.certificateDaysLeft.toFixed(1)} days (minimum ${target.health.certificateMinDaysLeft})`,
      ...base,
    };
  }
  return { healthy: true, detail: `status ${response.status}`, ...base };
};

/** One request through the EIP, judged. */
export const probeOnce = async (target: TargetConfig, publicIp: string): Promise<ProbeVerdict> =>
  judge(
    target,
    await httpGet({
      address: publicIp,
      scheme: schemeFor(target),
      domain: target.domain,
      path: target.health.path,
      timeoutMs: target.health.requestTimeoutSeconds * 1000,
    }),
  );

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Probes until `needed` consecutive healthy answers or until `deadlineMs` (epoch) passes.
 * Returns the last verdict and whether the streak was reached.
 */
export const probeUntilHealthy = async (
  target: TargetConfig,
  publicIp: string,
  needed: number,
  deadlineMs: number,
): Promise<{ reached: boolean; last: ProbeVerdict; attempts: number }> => {
  let streak = 0;
  let attempts = 0;
  let last: ProbeVerdict = { healthy: false, detail: 'not probed' };
  while (Date.now() <= deadlineMs) {
    last = await probeOnce(target, publicIp);
    attempts += 1;
    streak = last.healthy ? streak + 1 : 0;
    if (streak >= needed) return { reached: true, last, attempts };
    await sleep(target.health.intervalSeconds * 1000);
  }
  return { reached: false, last, attempts };
};
