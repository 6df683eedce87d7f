import type { TargetConfig } from '../../lambdas/shared/config';
import type { Sandbox } from '../../sandbox/aws/sandbox';
import type { ImageBehaviour } from '../../sandbox/contracts';
import type { World, WorldOptions } from '../workflow/helpers';

/**
 * The runs the matrix takes its call sites from. One happy run never makes the rollback step's calls,
 * the readiness agent's failure report, the certificate pack (restore) or certbot after the switch
 * (http-01), a rollback within the window or the lifecycle hooks; each source below is a scenario of the
 * demo (sandbox/demo.ts) that does, or a workflow test's setup (dns-01, rollback-window, hooks). Every source's server is managed by Terraform (the worlds' default), so
 * Reconcile's locks and writes are in the happy run; a run without Terraform makes no call the happy
 * run does not. The order matters: a call site is faulted in the first source that makes it.
 */
export interface Source {
  /** What the test names say, e.g. "(rollback run)". */
  readonly name: string;
  readonly options: Omit<WorldOptions, 'wrap' | 'aroundIntegration'>;
  /**
   * What the scenario needs before the run: account settings, or a whole earlier run. Its calls are
   * not the source's (the log, the faults' counts and the invariants' baseline start after it).
   */
  readonly setup?: (world: World) => void | Promise<void>;
  /** The execution input of the run under test (the default is a replacement of `web`). */
  readonly input?: Record<string, unknown>;
  /** How the run ends without a fault. */
  readonly outcome: 'replaced' | 'rolled-back' | 'rolled-back-by-request' | 'failed';
  /** Whether a rollback window is opened or closed here, so its schedules are checked after each cell. */
  readonly windows?: boolean;
  /** Whether the target runs lifecycle hooks, so each box's hook log is checked for a line run twice. */
  readonly hooks?: boolean;
  /**
   * Whether the box the run brings in (the new image, or the retired box a rollback restores) is bad
   * whatever happens: however a fault bends the run, the Elastic IP must end on the box that served
   * before, and the outcome must be the source's own (a rollback, or a failed rollback-by-request).
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

/** What the hooks run's lines leave in each box's hooks.log (the sandbox runs them in the box's root). */
export const HOOK_LINES = { beforeNew: 'warm-caches', afterOld: 'stop-workers', afterNew: 'start-workers' };

/** The replacement a rollback-by-request undoes: it retires the seeded box with a window. */
const replaceFirst = async (world: World): Promise<void> => {
  const replaced = await world.run({ target: 'web' }, { name: 'replace-before-rollback' });
  if (replaced.outcome !== 'replaced') {
    const cause = JSON.stringify(
      (replaced.inputs.Rollback as { error?: unknown } | undefined)?.error ?? replaced.inputs.Finish ?? {},
    ).slice(0, 600);
    throw new Error(
      `the replacement before the rollback ended ${replaced.outcome ?? 'without an outcome'}: ${cause}`,
    );
  }
};

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
  {
    // Rollback within the window: the box a replacement retired comes back; the replacement is setup.
    name: 'rollback-by-request run',
    options: {},
    setup: replaceFirst,
    input: { target: 'web', action: 'rollback' },
    outcome: 'rolled-back-by-request',
    candidateIsBad: false,
    windows: true,
  },
  {
    // The restored box's app breaks after it passed its local check: the probe fails, RevertRestore puts
    // the Elastic IP back on the newer box and the retired one to sleep again.
    name: 'failed rollback-by-request run',
    options: {},
    setup: async (world) => {
      await replaceFirst(world);
      const image = (world.sandbox as unknown as Sandbox).ec2.image(world.seeded.oldImageId) as {
        behaviour: ImageBehaviour;
      };
      image.behaviour = { cloudInit: 'done', app: { healthyForMs: 45_000 } };
    },
    input: { target: 'web', action: 'rollback' },
    outcome: 'failed',
    candidateIsBad: true,
    windows: true,
  },
  {
    // Lifecycle hooks at every point, as hooks.test.ts configures them: the hook function's SSM calls.
    name: 'hooks run',
    options: {
      target: (t) => ({
        ...t,
        hooks: {
          beforeSwitch: { newBox: [`echo ${HOOK_LINES.beforeNew} >> hooks.log`] },
          afterSwitch: {
            oldBox: [`echo ${HOOK_LINES.afterOld} >> hooks.log`],
            newBox: [`echo ${HOOK_LINES.afterNew} >> hooks.log`],
          },
        },
      }),
    },
    outcome: 'replaced',
    candidateIsBad: false,
    windows: true,
    hooks: true,
  },
];

export const sourceNamed = (name: string): Source => {
  const source = SOURCES.find((s) => s.name === name);
  if (!source) throw new Error(`no fault-matrix source named ${name}`);
  return source;
};
