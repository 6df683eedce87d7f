import { createPublicKey, createVerify, type KeyObject, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import type { AgentIdentity } from '../shared/schemas';

/**
 * Whether a readiness event really comes from the instance it names. The agent sends the instance
 * identity document and its signature exactly as IMDS served them; EC2 signs the document with the
 * Region's key, which no instance holds, so a box can vouch for itself only. AWS documents the
 * base64 `/signature` as SHA-256 with RSA over the document's bytes, checked with the public key of
 * the Region's certificate. Validity dates play no part: AWS's documented check only extracts the key,
 * and the key has outlived the 2014 certificate that first carried it.
 *
 * Pure: the trusted keys come in as a parameter, so the same check runs against AWS's certificates in
 * production and the sandbox's own in tests.
 */

/** Public keys trusted per Region. */
export type IdentityTrust = ReadonlyMap<string, readonly KeyObject[]>;

/** The environment variable the stack fills from `readinessAgent.identityCertificates`. */
export const IDENTITY_KEYS_VARIABLE = 'AGENT_IDENTITY_KEYS';

/** The RSA public key of a certificate (PEM); anything else is refused. */
export const certificateKey = (pem: string): KeyObject => {
  const key = new X509Certificate(pem).publicKey;
  if (key.asymmetricKeyType !== 'rsa') {
    throw new Error(`an identity certificate must hold an RSA key, not ${key.asymmetricKeyType ?? 'none'}`);
  }
  return key;
};

/** Every set's keys, Region by Region: a Region named in several sets trusts all of them. */
export const buildTrust = (
  ...sets: readonly Readonly<Record<string, readonly KeyObject[]>>[]
): IdentityTrust => {
  const trust = new Map<string, KeyObject[]>();
  for (const set of sets) {
    for (const [region, keys] of Object.entries(set))
      trust.set(region, [...(trust.get(region) ?? []), ...keys]);
  }
  return trust;
};

/** Keys of certificates given as PEM by Region (AWS's built-in table, or the config's). */
export const keysOfCertificates = (
  certificates: Readonly<Record<string, string>>,
): Record<string, KeyObject[]> => {
  const byPem = new Map<string, KeyObject>();
  return Object.fromEntries(
    Object.entries(certificates).map(([region, pem]) => {
      const key = byPem.get(pem) ?? certificateKey(pem);
      byPem.set(pem, key);
      return [region, [key]];
    }),
  );
};

/**
 * The value of IDENTITY_KEYS_VARIABLE for certificates by Region: JSON of each certificate's public key
 * (base64 DER SubjectPublicKeyInfo), a quarter of the certificate's size, since Lambda caps a function's
 * whole environment at 4 KB.
 */
export const identityKeysVariable = (certificates: Readonly<Record<string, string>>): string =>
  JSON.stringify(
    Object.fromEntries(
      Object.entries(certificates).map(([region, pem]) => [
        region,
        [certificateKey(pem).export({ type: 'spki', format: 'der' }).toString('base64')],
      ]),
    ),
  );

const KeysVariableSchema = z.record(z.string().min(1), z.array(z.string().min(1)).min(1));

/** Reads IDENTITY_KEYS_VARIABLE back; throws on a value the stack would not have written. */
export const parseIdentityKeysVariable = (value: string): Record<string, KeyObject[]> => {
  const parsed = KeysVariableSchema.parse(JSON.parse(value));
  return Object.fromEntries(
    Object.entries(parsed).map(([region, keys]) => [
      region,
      keys.map((der) => {
        const key = createPublicKey({ key: Buffer.from(der, 'base64'), format: 'der', type: 'spki' });
        if (key.asymmetricKeyType !== 'rsa') throw new Error(`the key trusted for ${region} is not RSA`);
        return key;
      }),
    ]),
  );
};

/** What the event claims, as EventBridge and the agent put it: the document must say the same. */
export interface ExpectedIdentity {
  /** `detail.instanceId`, which also names the token record of the awaited candidate. */
  readonly instanceId: string;
  /** The EventBridge event's `account`. */
  readonly accountId: string;
  /** The EventBridge event's `region`. */
  readonly region: string;
}

/** The fields of the document the check reads; the rest (image, type, IPs) is left alone. */
const DocumentSchema = z.object({
  instanceId: z.string().regex(/^i-[0-9a-f]{8,17}$/),
  accountId: z.string().regex(/^\d{12}$/),
  region: z.string().regex(/^[a-z]{2}(-[a-z0-9]+)+-\d+$/),
});
export type IdentityDocument = z.infer<typeof DocumentSchema>;

/** Either the document, vouched for, or one line on why not (never the document or the signature). */
export type IdentityVerdict =
  | { readonly ok: true; readonly document: IdentityDocument }
  | { readonly ok: false; readonly reason: string };

// IMDS wraps the signature in lines; the padding may only end it.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/**
 * Accepts the identity only when its signature verifies with a key trusted for the document's Region
 * and the document names the event's instance, account and Region.
 */
export const verifyIdentity = (
  identity: AgentIdentity | undefined,
  expected: ExpectedIdentity,
  trust: IdentityTrust,
): IdentityVerdict => {
  const reject = (reason: string): IdentityVerdict => ({ ok: false, reason });
  if (!identity) return reject('the event carries no instance identity document');
  const parsed = DocumentSchema.safeParse(parseJson(identity.document));
  if (!parsed.success) {
    return reject(
      'the identity document is not an instance identity document (no valid instanceId, accountId or region)',
    );
  }
  const document = parsed.data;
  const keys = trust.get(document.region) ?? [];
  if (keys.length === 0) {
    return reject(
      `no identity certificate is trusted for region ${document.region} (add it under readinessAgent.identityCertificates)`,
    );
  }
  const signatureText = identity.signature.replace(/\s+/g, '');
  if (signatureText.length === 0 || !BASE64.test(signatureText)) {
    return reject('the identity signature is not base64');
  }
  const signature = Buffer.from(signatureText, 'base64');
  const bytes = Buffer.from(identity.document, 'utf8');
  const verifies = keys.some((key) => {
    try {
      return createVerify('sha256').update(bytes).verify(key, signature);
    } catch {
      return false;
    }
  });
  if (!verifies) {
    return reject(
      `the identity signature does not verify with the certificate trusted for ${document.region}`,
    );
  }
  if (document.instanceId !== expected.instanceId) {
    return reject(`the identity document is instance ${document.instanceId}'s, not ${expected.instanceId}'s`);
  }
  if (document.accountId !== expected.accountId) {
    return reject(
      `the identity document is from account ${document.accountId}, the event from ${expected.accountId}`,
    );
  }
  if (document.region !== expected.region) {
    return reject(
      `the identity document is from region ${document.region}, the event from ${expected.region}`,
    );
  }
  return { ok: true, document };
};
