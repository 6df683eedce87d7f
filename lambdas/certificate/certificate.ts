import type { S3Client } from '@aws-sdk/client-s3';
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { z } from 'zod';
import { awsCall } from '../shared/aws-errors';
import { type CommandRef, sendCommandOnce } from '../shared/commands';
import type { TargetConfig } from '../shared/config';
import { ErrorNames, UnderstudyError } from '../shared/errors';
import { renewLock } from '../shared/lock';
import { correlate } from '../shared/logger';
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
    'set -euo pipefail',
    `certbot --nginx -d ${shellQuote(target.domain)} --non-interactive --agree-tos -m ${shellQuote(target.tls.email)} --keep-until-expiring`,
    'nginx -t',
    'systemctl reload nginx',
  ];
};

export interface CertificateClients {
  readonly ssm: SSMClient;
  readonly s3: S3Client;
}

/** Sends certbot to the candidate (once per execution) and returns the command to poll. */
export const certificate = async (
  clients: CertificateClients,
  state: CertificateInput,
): Promise<{ command: CommandRef }> => {
  const instanceId = state.launch.instanceId;
  correlate({ target: state.run.target.name, execution: state.execution.name, instance: instanceId });
  const commands = certificateScript(state.run.target);
  const lock = state.run.lock;
  if (lock) await awsCall('renewing the target lock', () => renewLock(clients.s3, lock));
  const { command } = await sendCommandOnce(clients.ssm, {
    instanceId,
    executionName: state.execution.name,
    purpose: PURPOSE,
    commands,
  });
  return { command };
};
