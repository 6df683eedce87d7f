import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { SandboxCa } from './contracts';

/**
 * A private certificate authority made with the `openssl` CLI. `openssl ca` is used (rather than
 * `x509 -req`) because OpenSSL 3.0 can set an explicit notBefore only there: the CA is valid a year
 * either side of real time, leaves from a day before now, so TLS verification (which uses real time)
 * holds however far the virtual clock has run.
 */

const exec = promisify(execFile);
const DAY_MS = 86_400_000;
// Real time even while the virtual clock owns Date: OpenSSL verifies against the real clock.
const realNow = (): number => Math.round(performance.timeOrigin + performance.now());

/** The CA plus the files a shell stand-in (certbot) needs to sign with it. */
export interface SandboxCaFiles extends SandboxCa {
  readonly certPath: string;
  readonly keyPath: string;
}

const stamp = (ms: number): string => `${new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

const config = (dir: string): string =>
  [
    '[ ca ]',
    'default_ca = sandbox_ca',
    '[ sandbox_ca ]',
    `database = ${path.join(dir, 'index.txt')}`,
    `new_certs_dir = ${path.join(dir, 'issued')}`,
    `serial = ${path.join(dir, 'serial')}`,
    'default_md = sha256',
    'policy = policy_any',
    // The same domain is issued many times (one box per replacement).
    'unique_subject = no',
    'email_in_dn = no',
    '[ policy_any ]',
    'commonName = supplied',
    'organizationName = optional',
    '[ ca_ext ]',
    'basicConstraints = critical, CA:TRUE, pathlen:0',
    'keyUsage = critical, keyCertSign, cRLSign',
    'subjectKeyIdentifier = hash',
    '',
  ].join('\n');

const leafExtensions = (domain: string): string =>
  [
    '[ leaf_ext ]',
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    'extendedKeyUsage = serverAuth',
    `subjectAltName = DNS:${domain}`,
    'authorityKeyIdentifier = keyid',
    '',
  ].join('\n');

const DOMAIN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

export async function createCa(dir: string): Promise<SandboxCaFiles> {
  await mkdir(path.join(dir, 'issued'), { recursive: true });
  const configPath = path.join(dir, 'openssl-ca.cnf');
  const keyPath = path.join(dir, 'ca.key');
  const certPath = path.join(dir, 'ca.crt');
  await writeFile(configPath, config(dir));
  await writeFile(path.join(dir, 'index.txt'), '');
  const { stdout: serial } = await exec('openssl', ['rand', '-hex', '16']);
  await writeFile(path.join(dir, 'serial'), `${serial.trim()}\n`);

  const csrPath = path.join(dir, 'ca.csr');
  await exec('openssl', [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    csrPath,
    '-subj',
    '/O=Understudy sandbox/CN=Understudy Sandbox CA',
  ]);
  const now = realNow();
  await exec('openssl', [
    'ca',
    '-batch',
    '-notext',
    '-config',
    configPath,
    '-selfsign',
    '-keyfile',
    keyPath,
    '-in',
    csrPath,
    '-out',
    certPath,
    '-startdate',
    stamp(now - 365 * DAY_MS),
    '-enddate',
    stamp(now + 365 * DAY_MS),
    '-extensions',
    'ca_ext',
  ]);
  const certPem = await readFile(certPath, 'utf8');

  // `openssl ca` rewrites its database and serial files: one signing at a time.
  let queue: Promise<unknown> = Promise.resolve();
  let issued = 0;

  const sign = async (domain: string, validDays: number): Promise<{ certPem: string; keyPem: string }> => {
    const base = path.join(dir, 'issued', `leaf-${++issued}-${domain.replace(/\*/g, '_')}`);
    await writeFile(`${base}.ext`, leafExtensions(domain));
    await exec('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${base}.key`,
      '-out',
      `${base}.csr`,
      '-subj',
      `/CN=${domain}`,
    ]);
    const at = realNow();
    await exec('openssl', [
      'ca',
      '-batch',
      '-notext',
      '-config',
      configPath,
      '-cert',
      certPath,
      '-keyfile',
      keyPath,
      '-in',
      `${base}.csr`,
      '-out',
      `${base}.crt`,
      '-startdate',
      stamp(at - DAY_MS),
      '-enddate',
      stamp(at + validDays * DAY_MS),
      '-extfile',
      `${base}.ext`,
      '-extensions',
      'leaf_ext',
    ]);
    return { certPem: await readFile(`${base}.crt`, 'utf8'), keyPem: await readFile(`${base}.key`, 'utf8') };
  };

  return {
    certPem,
    certPath,
    keyPath,
    issue(domain: string, validDays = 365) {
      if (!DOMAIN.test(domain)) return Promise.reject(new Error(`not a domain name: ${domain}`));
      const next = queue.then(() => sign(domain, validDays));
      queue = next.catch(() => undefined);
      return next;
    },
  };
}
