import type { z } from 'zod';
import {
  type CandidateCommandClients,
  type CommandRef,
  SCRIPT_PREAMBLE,
  sendForCandidate,
} from '../shared/commands';
import type { TargetConfig } from '../shared/config';
import { ErrorNames, UnderstudyError } from '../shared/errors';
import { LaunchResultSchema, RunStateSchema } from '../shared/schemas';
import { shellQuote } from '../shared/shell';

export const CertificateInputSchema = RunStateSchema.extend({ launch: LaunchResultSchema });
export type CertificateInput = z.infer<typeof CertificateInputSchema>;

export const PURPOSE = 'certificate';

/**
 * certbot's nginx installer obtains the certificate (http-01 through the EIP, which now points here) and
 * wires it into the site. `--keep-until-expiring` leaves a still-valid certificate alone, so a command
 * re-run by hand does not spend one of Let's Encrypt's five weekly duplicates. nginx is checked before
 * the reload so a broken config fails the step instead of the site.
 */
export const certificateScript = (target: TargetConfig): string[] => {
  if (target.tls.mode !== 'http-01' || target.tls.email === undefined) {
    throw new UnderstudyError(
      ErrorNames.InvalidInput,
      `run.target.tls: the certificate step runs only for tls.mode "http-01" with an email (target ${target.name} has mode "${target.tls.mode}")`,
      { field: 'run.target.tls' },
    );
  }
  return [
    ...SCRIPT_PREAMBLE,
    `certbot --nginx -d ${shellQuote(target.domain)} --non-interactive --agree-tos -m ${shellQuote(target.tls.email)} --keep-until-expiring`,
    'nginx -t',
    'systemctl reload nginx',
  ];
};

export type CertificateClients = CandidateCommandClients;

/** Sends certbot to the candidate (once per execution) and returns the command to poll. */
export const certificate = async (
  clients: CertificateClients,
  state: CertificateInput,
): Promise<{ command: CommandRef }> => {
  // Built first: a target in the wrong TLS mode is refused before the lock or the agent is touched.
  const commands = certificateScript(state.run.target);
  return sendForCandidate(clients, state, PURPOSE, commands);
};
