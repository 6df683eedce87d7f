import type { z } from 'zod';
import { type CandidateCommandClients, SCRIPT_PREAMBLE, sendForInstance } from '../shared/commands';
import type { TargetConfig } from '../shared/config';
import { ErrorNames, UnderstudyError } from '../shared/errors';
import { RunStateSchema } from '../shared/schemas';
import { shellQuote } from '../shared/shell';
import {
  acmeAccountCommands,
  LETSENCRYPT_DIR,
  type PackResult,
  presignUpload,
  renewalConf,
  TRANSFER_CONTENT_TYPE,
  transferKey,
} from '../shared/tls';

/**
 * restore, first half: the OLD box (still serving) packs the domain's current certificate and private
 * key, its live links, renewal config and ACME account, and uploads them through a presigned PUT URL.
 * Prepare unpacks them on the new box. Nothing is requested from Let's Encrypt.
 */

export const PackCertificateInputSchema = RunStateSchema;
export type PackCertificateInput = z.infer<typeof PackCertificateInputSchema>;

export const PURPOSE = 'pack-certificate';

export interface PackCertificateEnv {
  readonly runsBucket: string;
}

export type PackCertificateClients = CandidateCommandClients;

const FAILURE = 'certificate pack failed';

/**
 * The lineage's current version only: the four archive files the live/ links point to now. Older
 * versions (one more private key per renewal) stay behind; certbot numbers the next one from the
 * newest it finds. Each name is checked before it reaches tar.
 */
export const currentVersionCommands = (domain: string): string[] => [
  'versions=()',
  'for kind in cert chain fullchain privkey; do',
  `  link="$(readlink ${shellQuote(`${LETSENCRYPT_DIR}/live/${domain}/`)}"$kind.pem")" || { echo ${shellQuote(
    `${FAILURE}: ${LETSENCRYPT_DIR}/live/${domain}/ lacks the links certbot keeps into archive/`,
  )} >&2; exit 1; }`,
  '  version="$(basename -- "$link")"',
  `  [[ "$version" =~ ^(cert|chain|fullchain|privkey)[0-9]+\\.pem$ ]] || { echo ${shellQuote(
    `${FAILURE}: a link in ${LETSENCRYPT_DIR}/live/${domain}/ does not point to a certbot version file`,
  )} >&2; exit 1; }`,
  `  versions+=(${shellQuote(`archive/${domain}/`)}"$version")`,
  'done',
];

/**
 * `umask 077` keeps the packed private keys readable by root only while they sit in the temporary
 * file, and the trap removes that file whatever happens. `live/` holds symlinks into `archive/`; tar
 * keeps them as links, so certbot's layout arrives intact, and with the renewal config and the ACME
 * account it names, `certbot renew` works on the new box.
 */
export const packScript = (target: TargetConfig, uploadUrl: string): string[] => {
  const domain = target.domain;
  return [
    ...SCRIPT_PREAMBLE,
    'umask 077',
    ...acmeAccountCommands(domain, FAILURE),
    ...currentVersionCommands(domain),
    'transfer="$(mktemp)"',
    `trap 'rm -f "$transfer"' EXIT`,
    `tar -C ${LETSENCRYPT_DIR} -czf "$transfer" ${shellQuote(`live/${domain}`)} "\${versions[@]}" ${shellQuote(renewalConf(domain))} "\${accounts[@]}"`,
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
