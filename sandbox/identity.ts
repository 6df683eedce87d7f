import { execFileSync } from 'node:child_process';
import { createPrivateKey, createSign, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The sandbox's stand-in for EC2's instance identity signing key. IMDS on a real box serves a document
 * EC2 signed with its Region's key; the sandbox has no such key, so it signs with a key pair of its own
 * and its account's config trusts that certificate the way a user trusts a Region Understudy does not
 * know yet (`readinessAgent.identityCertificates`). One key pair, made on first use and shared by every
 * sandbox that loads this module: the handlers read their environment once, so every sandbox they serve
 * must sign with the key that environment names.
 */

export interface InstanceIdentityFields {
  readonly accountId: string;
  readonly region: string;
  readonly instanceId: string;
  readonly imageId: string;
  readonly instanceType: string;
  readonly availabilityZone: string;
  readonly privateIp: string;
  /** When the instance was launched, ms since the epoch. */
  readonly pendingTime: number;
  readonly architecture?: string;
}

export interface IdentitySigner {
  /** The self-signed certificate of the signing key, as PEM. */
  readonly certificatePem: string;
  /** Base64 RSA-SHA256 signature of the document's bytes, wrapped at 76 columns as IMDS serves it. */
  sign(document: string): string;
  /** What IMDS serves at dynamic/instance-identity/{document,signature} for the instance. */
  identityOf(fields: InstanceIdentityFields): { document: string; signature: string };
}

/** The document in IMDS's own layout (`"key" : value`, two-space indent, no final newline). */
export const identityDocument = (fields: InstanceIdentityFields): string => {
  const entries: [string, string | null][] = [
    ['accountId', fields.accountId],
    ['architecture', fields.architecture ?? 'x86_64'],
    ['availabilityZone', fields.availabilityZone],
    ['billingProducts', null],
    ['devpayProductCodes', null],
    ['marketplaceProductCodes', null],
    ['imageId', fields.imageId],
    ['instanceId', fields.instanceId],
    ['instanceType', fields.instanceType],
    ['kernelId', null],
    ['pendingTime', new Date(fields.pendingTime).toISOString().replace(/\.\d{3}Z$/, 'Z')],
    ['privateIp', fields.privateIp],
    ['ramdiskId', null],
    ['region', fields.region],
    ['version', '2017-09-30'],
  ];
  return `{\n${entries.map(([key, value]) => `  ${JSON.stringify(key)} : ${JSON.stringify(value)}`).join(',\n')}\n}`;
};

const signerOf = (privateKey: KeyObject, certificatePem: string): IdentitySigner => {
  const sign = (document: string): string =>
    (
      createSign('sha256')
        .update(Buffer.from(document, 'utf8'))
        .sign(privateKey)
        .toString('base64')
        .match(/.{1,76}/g) ?? []
    ).join('\n');
  return {
    certificatePem,
    sign,
    identityOf: (fields) => {
      const document = identityDocument(fields);
      return { document, signature: sign(document) };
    },
  };
};

/** A fresh RSA key pair and self-signed certificate (the `openssl` CLI makes the certificate). */
export const createIdentitySigner = (): IdentitySigner => {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-identity-'));
  try {
    const keyPath = join(dir, 'identity.key');
    const certPath = join(dir, 'identity.crt');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-sha256',
        '-days',
        '3650',
        '-subj',
        '/O=Understudy sandbox/CN=Sandbox instance identity',
        '-keyout',
        keyPath,
        '-out',
        certPath,
      ],
      { stdio: 'ignore' },
    );
    return signerOf(createPrivateKey(readFileSync(keyPath, 'utf8')), readFileSync(certPath, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

let processSigner: IdentitySigner | undefined;

/** The process's signer, made on first use. */
export const sandboxIdentitySigner = (): IdentitySigner => {
  processSigner ??= createIdentitySigner();
  return processSigner;
};
