import { z } from 'zod';
import {
  type CandidateCommandClients,
  type CommandRef,
  SCRIPT_PREAMBLE,
  sendForCandidate,
} from '../shared/commands';
import type { TargetConfig } from '../shared/config';
import { ErrorNames, UnderstudyError } from '../shared/errors';
import { type ExecutionContext, LaunchResultSchema, RunStateSchema } from '../shared/schemas';
import { shellQuote } from '../shared/shell';
import {
  acmeAccountCommands,
  LETSENCRYPT_DIR,
  localTlsCheckCommands,
  type PackResult,
  PackResultSchema,
  presignDownload,
  transferPrefix,
} from '../shared/tls';

export const PrepareInputSchema = RunStateSchema.extend({
  launch: LaunchResultSchema,
  // The agent's report; prepare runs only after it succeeded and does not read it.
  readiness: z.unknown().optional(),
  // restore only: the pack step's command and the object it uploaded.
  pack: PackResultSchema.optional(),
});
export type PrepareInput = z.infer<typeof PrepareInputSchema>;

export const PURPOSE = 'prepare';

export interface PrepareEnv {
  readonly runsBucket: string;
}

const invalid = (field: string, message: string) =>
  new UnderstudyError(ErrorNames.InvalidInput, `${field}: ${message}`, { field });

/**
 * restore, second half: fetch the old box's certbot files, unpack them where certbot keeps them, check
 * the ACME account for renewals arrived with them, and let certbot's nginx installer wire the existing
 * certificate into the site (`install` requests nothing). The private key only ever sits in a
 * root-only temporary file and in /etc/letsencrypt.
 */
export const restoreCommands = (target: TargetConfig, downloadUrl: string): string[] => [
  'umask 077',
  'transfer="$(mktemp)"',
  `trap 'rm -f "$transfer"' EXIT`,
  `curl -fsS --max-time 60 -o "$transfer" ${shellQuote(downloadUrl)}`,
  `mkdir -p ${LETSENCRYPT_DIR}`,
  `tar -C ${LETSENCRYPT_DIR} -xzf "$transfer"`,
  ...acmeAccountCommands(target.domain, 'certificate restore failed'),
  `certbot install --nginx --cert-name ${shellQuote(target.domain)} --non-interactive`,
  'nginx -t',
  'systemctl reload nginx',
];

/**
 * dns-01: certbot proves control of the domain through a TXT record in Route 53 (the instance role's
 * dns-01 policy allows exactly that record), so the certificate exists before any traffic moves.
 * `--keep-until-expiring` leaves a still-valid certificate alone instead of spending a new one.
 */
export const dns01Commands = (target: TargetConfig): string[] => {
  if (target.tls.email === undefined) {
    throw invalid(
      'run.target.tls.email',
      `dns-01 needs an email for the ACME account (target ${target.name})`,
    );
  }
  return [
    `certbot run -a dns-route53 -i nginx -d ${shellQuote(target.domain)} --non-interactive --agree-tos -m ${shellQuote(target.tls.email)} --keep-until-expiring`,
    'nginx -t',
    'systemctl reload nginx',
  ];
};

/**
 * TLS work that must happen before traffic moves, then the check that nginx serves it. `http-01` can
 * only run after the switch (its own step) and `none` has nothing to do. Preflight always writes a
 * concrete mode, so a missing one means the state did not come from preflight.
 */
export const tlsCommands = (target: TargetConfig, downloadUrl?: string): string[] => {
  switch (target.tls.mode) {
    case 'http-01':
    case 'none':
      return [];
    case 'restore':
      if (downloadUrl === undefined) {
        throw invalid('pack', 'restore needs the certificate transfer from the pack step');
      }
      return [...restoreCommands(target, downloadUrl), ...localTlsCheckCommands(target)];
    case 'dns-01':
      return [...dns01Commands(target), ...localTlsCheckCommands(target)];
    case undefined:
      throw invalid('run.target.tls.mode', 'no TLS mode: preflight writes the effective mode into the plan');
  }
};

/** Modes whose certificate nginx serves before the switch. */
const servesHttpsBeforeSwitch = (target: TargetConfig): boolean =>
  target.tls.mode === 'restore' || target.tls.mode === 'dns-01';

/**
 * The app answers on the candidate itself, for the site's name, before it gets any traffic. Once
 * certbot's nginx installer ran (restore, dns-01) plain HTTP for the domain only redirects to HTTPS,
 * and `curl -f` counts a 301 as success, so the check asks over HTTPS, the domain pinned to loopback.
 * `grep` without `-q` reads the whole body: an early exit would kill curl with SIGPIPE and `pipefail`
 * would then fail a healthy check.
 */
export const localCheckCommands = (target: TargetConfig): string[] => {
  const { domain, health } = target;
  const curl = servesHttpsBeforeSwitch(target)
    ? `curl -fsS --max-time 10 --resolve ${shellQuote(`${domain}:443:127.0.0.1`)} ${shellQuote(`https://${domain}${health.path}`)}`
    : `curl -fsS --max-time 10 -H ${shellQuote(`Host: ${domain}`)} ${shellQuote(`http://127.0.0.1${health.path}`)}`;
  if (health.bodyContains === undefined) return [curl];
  return [
    `${curl} | grep -F -- ${shellQuote(health.bodyContains)} > /dev/null || { echo ${shellQuote(
      `local app check failed: no answer, an error status, or a body without ${JSON.stringify(health.bodyContains)}`,
    )} >&2; exit 1; }`,
  ];
};

export const prepareScript = (target: TargetConfig, downloadUrl?: string): string[] => [
  ...SCRIPT_PREAMBLE,
  ...tlsCommands(target, downloadUrl),
  ...localCheckCommands(target),
];

/** The pack step's object, held to this execution's prefix so a forged state cannot fetch another run's. */
const transferOf = (execution: ExecutionContext, pack: PackResult | undefined): string => {
  if (pack === undefined) throw invalid('pack', 'restore needs the pack step result ($.pack)');
  if (!pack.transferKey.startsWith(transferPrefix(execution.name))) {
    throw invalid('pack.transferKey', `${pack.transferKey} is not under ${transferPrefix(execution.name)}`);
  }
  return pack.transferKey;
};

export type PrepareClients = CandidateCommandClients;

/** Sends the candidate's TLS work and local checks (once per execution) and returns the command to poll. */
export const prepare = async (
  clients: PrepareClients,
  env: PrepareEnv,
  state: PrepareInput,
): Promise<{ command: CommandRef }> => {
  const target = state.run.target;
  const downloadUrl =
    target.tls.mode === 'restore'
      ? await presignDownload(clients.s3, env.runsBucket, transferOf(state.execution, state.pack))
      : undefined;
  // Built before the lock or the agent is touched: a state that cannot be served is refused first.
  const commands = prepareScript(target, downloadUrl);
  return sendForCandidate(clients, state, PURPOSE, commands);
};
