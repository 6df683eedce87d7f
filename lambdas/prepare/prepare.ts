import { z } from 'zod';
import {
  type CandidateCommandClients,
  type CommandRef,
  SCRIPT_PREAMBLE,
  sendForCandidate,
} from '../shared/commands';
import type { TargetConfig } from '../shared/config';
import { LaunchResultSchema, RunStateSchema } from '../shared/schemas';
import { shellQuote } from '../shared/shell';

export const PrepareInputSchema = RunStateSchema.extend({
  launch: LaunchResultSchema,
  // The agent's report; prepare runs only after it succeeded and does not read it.
  readiness: z.unknown().optional(),
});
export type PrepareInput = z.infer<typeof PrepareInputSchema>;

export const PURPOSE = 'prepare';

/**
 * TLS work that must happen before traffic moves. `http-01` can only run after the switch (its own
 * step) and `none` has nothing to do; `restore` and `dns-01` will add their lines here.
 */
export const tlsCommands = (target: TargetConfig): string[] => {
  switch (target.tls.mode) {
    case 'http-01':
    case 'none':
    case undefined:
      return [];
    case 'restore':
    case 'dns-01':
      // Wired in by the TLS-continuity work (issue 4).
      return [];
  }
};

/**
 * The app answers on the candidate itself, with the site's Host header, before it gets any traffic.
 * `grep` without `-q` reads the whole body: an early exit would kill curl with SIGPIPE and `pipefail`
 * would then fail a healthy check.
 */
export const localCheckCommands = (target: TargetConfig): string[] => {
  const { domain, health } = target;
  const curl = `curl -fsS --max-time 10 -H ${shellQuote(`Host: ${domain}`)} ${shellQuote(`http://127.0.0.1${health.path}`)}`;
  if (health.bodyContains === undefined) return [curl];
  return [
    `${curl} | grep -F -- ${shellQuote(health.bodyContains)} > /dev/null || { echo ${shellQuote(
      `local app check failed: no answer, an error status, or a body without ${JSON.stringify(health.bodyContains)}`,
    )} >&2; exit 1; }`,
  ];
};

export const prepareScript = (target: TargetConfig): string[] => [
  ...SCRIPT_PREAMBLE,
  ...tlsCommands(target),
  ...localCheckCommands(target),
];

export type PrepareClients = CandidateCommandClients;

/** Sends the candidate's local app check (once per execution) and returns the command to poll. */
export const prepare = (clients: PrepareClients, state: PrepareInput): Promise<{ command: CommandRef }> =>
  sendForCandidate(clients, state, PURPOSE, prepareScript(state.run.target));
