import { createHash } from 'node:crypto';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { z } from 'zod';
import type { TargetConfig } from './config';
import { CommandRefSchema } from './schemas';
import { shellQuote } from './shell';

/**
 * TLS continuity (restore mode): the old box's certificate, key and renewal config travel to the new
 * box as one gzip object in the runs bucket. Neither box holds S3 permissions for it: each gets a
 * presigned URL that is valid for minutes and names exactly one object, and Finish deletes it.
 */

/** Every transfer object lives under this prefix; a lifecycle rule expires it as a backstop. */
export const TRANSFER_PREFIX = 'tls/';
/**
 * Long enough for SSM to deliver the pack command to the old box and curl to upload; short enough to be
 * worthless later.
 */
export const UPLOAD_URL_EXPIRES_SECONDS = 300;
/**
 * The download runs first in Prepare's script on a box that is already up, and the URL fetches a
 * private key: it gets less time than the upload.
 */
export const DOWNLOAD_URL_EXPIRES_SECONDS = 120;
export const TRANSFER_CONTENT_TYPE = 'application/gzip';
/** certbot's layout; its cert name is the domain. */
export const LETSENCRYPT_DIR = '/etc/letsencrypt';

/** Where every transfer object of one execution lives (Finish deletes the whole prefix). */
export const transferPrefix = (executionName: string): string => `${TRANSFER_PREFIX}${executionName}/`;

/**
 * The transfer object of an execution. Deterministic, so a retried pack step signs the same key an
 * earlier attempt's command may already be writing; the digest of the ARN keeps it unguessable from
 * the execution name alone.
 */
export const transferKey = (execution: { readonly name: string; readonly arn: string }): string =>
  `${transferPrefix(execution.name)}${createHash('sha256').update(execution.arn).digest('hex').slice(0, 16)}.tar.gz`;

/** What the pack step leaves in the state for Prepare (`$.pack`). */
export const PackResultSchema = z.object({
  command: CommandRefSchema,
  transferKey: z.string().startsWith(TRANSFER_PREFIX),
  /** Written by the AwaitPack state once the command succeeded. */
  result: z.unknown().optional(),
});
export type PackResult = z.infer<typeof PackResultSchema>;

/**
 * Since client-s3 3.729 a PutObject carries a CRC32 of its (here empty) body, and the presigner would
 * hoist it into the URL: S3 would then refuse the real upload as a bad digest. Neither hoisted nor
 * signed, these headers simply stay out of the URL; the GET's checksum mode goes the same way.
 */
const CHECKSUM_HEADERS: ReadonlySet<string> = new Set([
  'x-amz-checksum-crc32',
  'x-amz-checksum-crc32c',
  'x-amz-checksum-crc64nvme',
  'x-amz-checksum-sha1',
  'x-amz-checksum-sha256',
  'x-amz-sdk-checksum-algorithm',
  'x-amz-checksum-mode',
]);
const presignOptions = (expiresIn: number) => ({
  expiresIn,
  unhoistableHeaders: new Set(CHECKSUM_HEADERS),
  unsignableHeaders: new Set(CHECKSUM_HEADERS),
});

/**
 * A URL the old box PUTs the transfer to. Signed locally with the function's credentials (no call to
 * S3), so it carries the function role's s3:PutObject on `tls/*`. The Content-Type is signed: the
 * upload must declare the same type.
 */
export const presignUpload = (s3: S3Client, bucket: string, key: string): Promise<string> =>
  getSignedUrl(s3, new PutObjectCommand({ Bucket: bucket, Key: key, ContentType: TRANSFER_CONTENT_TYPE }), {
    ...presignOptions(UPLOAD_URL_EXPIRES_SECONDS),
    signableHeaders: new Set(['content-type']),
  });

/** A URL the new box GETs the transfer from; it carries the function role's s3:GetObject on `tls/*`. */
export const presignDownload = (s3: S3Client, bucket: string, key: string): Promise<string> =>
  getSignedUrl(
    s3,
    new GetObjectCommand({ Bucket: bucket, Key: key }),
    presignOptions(DOWNLOAD_URL_EXPIRES_SECONDS),
  );

/** A listing is one page of up to 1,000 keys; an execution writes one object, so a few pages bound it. */
const MAX_LIST_PAGES = 10;

/**
 * Deletes every object under the execution's transfer prefix and returns the keys it deleted. Deleting
 * a key that is already gone succeeds in S3, so a retry is a no-op.
 */
export const deleteTransferObjects = async (
  s3: S3Client,
  bucket: string,
  executionName: string,
): Promise<string[]> => {
  // The runs bucket is versioned: a plain delete would only hide the private key behind a delete
  // marker until the lifecycle rule ran. Every version (and marker) under the prefix goes for good.
  const deleted: string[] = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (let page = 0; page < MAX_LIST_PAGES; page += 1) {
    const out = await s3.send(
      new ListObjectVersionsCommand({
        Bucket: bucket,
        Prefix: transferPrefix(executionName),
        ...(keyMarker ? { KeyMarker: keyMarker } : {}),
        ...(versionMarker ? { VersionIdMarker: versionMarker } : {}),
      }),
    );
    for (const version of [...(out.Versions ?? []), ...(out.DeleteMarkers ?? [])]) {
      if (version.Key === undefined || version.VersionId === undefined) continue;
      await s3.send(
        new DeleteObjectCommand({ Bucket: bucket, Key: version.Key, VersionId: version.VersionId }),
      );
      if (!deleted.includes(version.Key)) deleted.push(version.Key);
    }
    if (!out.IsTruncated) break;
    keyMarker = out.NextKeyMarker;
    versionMarker = out.NextVersionIdMarker;
  }
  return deleted;
};

/** `cmd || { echo reason >&2; exit 1; }`: a failing check says why in one line on stderr. */
const orFail = (command: string, reason: string): string =>
  `${command} || { echo ${shellQuote(reason)} >&2; exit 1; }`;

/** `renewal/<domain>.conf`, relative to the certbot directory: how certbot renews the lineage. */
export const renewalConf = (domain: string): string => `renewal/${domain}.conf`;

/** certbot names an ACME account by the MD5 of its public key: 32 lowercase hex digits. */
const ACME_ACCOUNT_ID = '^[0-9a-f]{32}$';

/**
 * Sets `$account` to the ACME account `renewal/<domain>.conf` names and `accounts` to its directories
 * (`accounts/<server>/directory/<id>`, relative to the certbot directory), or stops with a one-line
 * reason. `certbot renew` loads exactly that account and fails without it, while `certbot install`
 * never looks, so a lineage moved without it would only break at its first renewal, weeks later.
 * The id is checked before it reaches a path; `find` (not a glob) so the directory is looked up where
 * certbot keeps it, and `-printf %P` keeps the paths relative for tar.
 */
export const acmeAccountCommands = (domain: string, failure: string): string[] => {
  const conf = renewalConf(domain);
  return [
    orFail(
      `account="$(sed -n 's/^account[[:space:]]*=[[:space:]]*//p' ${shellQuote(`${LETSENCRYPT_DIR}/${conf}`)} 2>/dev/null)"`,
      `${failure}: cannot read ${LETSENCRYPT_DIR}/${conf}`,
    ),
    orFail(
      `[[ "$account" =~ ${ACME_ACCOUNT_ID} ]]`,
      `${failure}: ${conf} names no ACME account (expected a line "account = " and 32 hex digits)`,
    ),
    `mapfile -t accounts < <(find ${LETSENCRYPT_DIR}/accounts -mindepth 3 -maxdepth 3 -type d -path "*/directory/$account" -printf 'accounts/%P\\n' 2>/dev/null)`,
    orFail(
      `[[ \${#accounts[@]} -gt 0 ]]`,
      `${failure}: the ACME account that ${conf} names is not under ${LETSENCRYPT_DIR}/accounts/*/directory/`,
    ),
  ];
};

/** Seconds in a day, for openssl's `-checkend`. */
const DAY_SECONDS = 86_400;

/**
 * On the new box, before the switch (restore and dns-01): nginx answers the health path over HTTPS for
 * the domain on loopback, with a chain and name that curl verifies against the box's trust store, and
 * the certificate nginx actually serves for the domain (not a file it may not have loaded) stays valid
 * for at least `certificateMinDaysLeft` days, the margin the probe holds it to after the switch.
 * s_client's own status is set aside (`|| true`): it may be cut off by SIGPIPE once x509 has read the
 * certificate, which pipefail would count as a failure; a handshake that fails leaves x509 nothing to
 * read, and x509 fails then.
 */
export const localTlsCheckCommands = (target: TargetConfig): string[] => {
  const { domain, health } = target;
  const days = health.certificateMinDaysLeft;
  return [
    orFail(
      `curl -fsS --max-time 10 --resolve ${shellQuote(`${domain}:443:127.0.0.1`)} -o /dev/null ${shellQuote(`https://${domain}${health.path}`)}`,
      `local TLS check failed: nginx on this box did not answer https://${domain}${health.path} with a certificate valid for ${domain}`,
    ),
    orFail(
      `{ openssl s_client -connect 127.0.0.1:443 -servername ${shellQuote(domain)} </dev/null 2>/dev/null || true; } | openssl x509 -noout -checkend ${days * DAY_SECONDS}`,
      `local TLS check failed: the certificate nginx serves for ${domain} expires within ${days} days (health.certificateMinDaysLeft)`,
    ),
  ];
};
