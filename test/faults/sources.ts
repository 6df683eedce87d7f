import type { TargetConfig } from '../../lambdas/shared/config';
import type { World, WorldOptions } from '../workflow/helpers';

/**
 * The runs the matrix takes its call sites from. One happy run never makes the rollback step's calls,
 * the readiness agent's failure report, the certificate pack (restore) or certbot after the switch
 * (http-01); each source below is a scenario of the demo (sandbox/demo.ts) that does, or a TLS mode's
 * workflow test (dns-01). Every source's server is managed by Terraform (the worlds' default), so
 * Reconcile's locks and writes are in the happy run; a run without Terraform makes no call the happy
 * run does not. The order matters: a call site is faulted in the first source that makes it.
 */
export interface Source {
  /** What the test names say, e.g. "(rollback run)". */
  readonly name: string;
  readonly options: Omit<WorldOptions, 'wrap' | 'aroundIntegration'>;
  /** Account settings the scenario needs before the run (made without calls in the log). */
  readonly setup?: (world: World) => void;
  /** How the run ends without a fault. */
  readonly outcome: 'replaced' | 'rolled-back';
  /**
   * Whether the new image is bad whatever happens: however a fault bends the run, the Elastic IP must
   * end on the old box, and the outcome must be a rollback.
   */
  readonly candidateIsBad: boolean;
}

/** restore and dns-01 certify before the switch, as their workflow tests configure them. */
const https = (tls: TargetConfig['tls']) => (t: TargetConfig) => ({
  ...t,
  tls,
  // The app check must see the app's own body: over plain HTTP, certbot's redirect would answer.
  health: { ...t.health, bodyContains: 'ok i-' },
});

export const SOURCES: readonly Source[] = [
  { name: 'happy run', options: {}, outcome: 'replaced', candidateIsBad: false },
  {
    // bad-app: healthy at first, failing during the bake, so the EIP moves and comes back.
    name: 'rollback run',
    options: { newImage: { cloudInit: 'done', app: { healthyForMs: 40_000 } } },
    outcome: 'rolled-back',
    candidateIsBad: true,
  },
  {
    // bad-ami: cloud-init fails, so the readiness agent reports failure and the EIP never moves.
    name: 'bad-ami run',
    options: { newImage: { cloudInit: 'error', app: 'broken' } },
    outcome: 'rolled-back',
    candidateIsBad: true,
  },
  {
    name: 'tls-restore run',
    options: { target: https({ mode: 'restore' }) },
    outcome: 'replaced',
    candidateIsBad: false,
  },
  {
    name: 'http-01 run',
    options: { target: (t) => ({ ...t, tls: { mode: 'http-01', email: 'ops@example.test' } }) },
    outcome: 'replaced',
    candidateIsBad: false,
  },
  {
    name: 'dns-01 run',
    options: {
      target: https({ mode: 'dns-01', email: 'ops@example.test', hostedZoneId: 'Z0123456789ABCDEFGHIJ' }),
    },
    setup: (world) => world.sandbox.allowDns01('web'),
    outcome: 'replaced',
    candidateIsBad: false,
  },
];

export const sourceNamed = (name: string): Source => {
  const source = SOURCES.find((s) => s.name === name);
  if (!source) throw new Error(`no fault-matrix source named ${name}`);
  return source;
};
