import type { z } from 'zod';
import { type CandidateCommandClients, SCRIPT_PREAMBLE, sendForInstance } from '../shared/commands';
import type { TargetConfig } from '../shared/config';
import { ErrorNames, UnderstudyError } from '../shared/errors';
import { RunStateSchema } from '../shared/schemas';
import { shellQuote } from '../shared/shell';
import {
  LETSENCRYPT_DIR,
  type PackResult,
  presignUpload,
  TRANSFER_CONTENT_TYPE,
  transferKey,
} from '../shared/tls';

/**
 * restore, first half: the OLD box (still serving) packs the domain's certificate, private key,
 * archive and renewal config and uploads them through a presigned PUT URL. Prepare unpacks them on the
 * new box. Nothing is requested from Let's Encrypt.
 */

export const PackCertificateInputSchema = RunStateSchema;
export type PackCertificateInput = z.infer<typeof PackCertificateInputSchema>;

export const PURPOSE = 'pack-certificate';

export interface PackCertificateEnv {
  readonly runsBucket: string;
}

export type PackCertificateClients = CandidateCommandClients;

/**
 * `umask 077` keeps the packed private key readable by root only while it sits in the temporary file,
 * and the trap removes that file whatever happens. `live/` holds symlinks into `archive/`; tar keeps
 * them as links, so certbot's layout arrives intact and renewal keeps working on the new box.
 */
export const packScript = (target: TargetConfig, uploadUrl: string): string[] => {
  const domain = target.domain;
  return [
    ...SCRIPT_PREAMBLE,
    'umask 077',
    'transfer="$(mktemp)"',
    `trap 'rm -f "$transfer"' EXIT`,
    `tar -C ${LETSENCRYPT_DIR} -czf "$transfer" ${shellQuote(`live/${domain}`)} ${shellQuote(`archive/${domain}`)} ${shellQuote(`renewal/${domain}.conf`)}`,
    `curl -fsS --max-time 60 -X PUT -H ${shellQuote(`Content-Type: ${TRANSFER_CONTENT_TYPE}`)} --upload-file "$transfer" ${shellQuote(uploadUrl)}`,
  ];
};

const requireRestore = (target: TargetConfig): void => {
  if (target.tls.mode !== 'restore') {
    throw new UnderstudyError(
      ErrorNames.InvalidInput,
      `run.target.tls.mode: the pack step runs only in restore mode (target ${target.name} has mode "${target.tls.mode ?? 'unset'}")`,
      { field: 'run.target.tls.mode' },
    );
  }
};

/** Sends the pack script to the old box (once per execution) and returns the command and the object key. */
export const packCertificate = async (
  clients: PackCertificateClients,
  env: PackCertificateEnv,
  state: PackCertificateInput,
): Promise<PackResult> => {
  // Checked first: a target in the wrong mode is refused before the lock or the agent is touched.
  requireRestore(state.run.target);
  const key = transferKey(state.execution);
  // Signed locally, so a retry that reuses the earlier command wastes nothing but a signature.
  const url = await presignUpload(clients.s3, env.runsBucket, key);
  const { command } = await sendForInstance(
    clients,
    state,
    state.run.old.instanceId,
    PURPOSE,
    packScript(state.run.target, url),
  );
  return { command, transferKey: key };
};
