import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { SandboxCaFiles } from './contracts';

/**
 * A private certificate authority made with the `openssl` CLI. `openssl ca` is used (rather than
 * `x509 -req`) because OpenSSL 3.0 can set an explicit notBefore only there: the CA is valid a year
 * either side of real time, leaves from a day before now, so TLS verification (which uses real time)
 * holds however far the virtual clock has run. Leaves are signed by one script,
 * standins/libexec/ca-issue, which certbot's stand-in runs on the boxes too.
 */

const exec = promisify(execFile);
const DAY_MS = 86_400_000;
// Real time even while the virtual clock owns Date: OpenSSL verifies against the real clock.
const realNow = (): number => Math.round(performance.timeOrigin + performance.now());
const ISSUE_SCRIPT = path.join(__dirname, 'standins', 'libexec', 'ca-issue');

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

const DOMAIN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

export async function createCa(dir: string): Promise<SandboxCaFiles> {
  await mkdir(path.join(dir, 'issued'), { recursive: true });
  const configPath = path.join(dir, 'openssl-ca.cnf');
  const keyPath = path.join(dir, 'ca.key');
  const certPath = path.join(dir, 'ca.crt');
  const csrPath = path.join(dir, 'ca.csr');
  await writeFile(configPath, config(dir));
  await writeFile(path.join(dir, 'index.txt'), '');
  const { stdout: serial } = await exec('openssl', ['rand', '-hex', '16']);
  await writeFile(path.join(dir, 'serial'), `${serial.trim()}\n`);
  // The CA is the one certificate not signed by ca-issue: it signs itself, with CA extensions.
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

  return {
    certPem,
    dir,
    certPath,
    keyPath,
    async issue(domain: string, validDays = 365) {
      if (!DOMAIN.test(domain)) throw new Error(`not a domain name: ${domain}`);
      const out = await mkdtemp(path.join(dir, 'issued', 'leaf-'));
      await exec(ISSUE_SCRIPT, [dir, String(validDays), out, domain]);
      const [leaf, key] = await Promise.all([
        readFile(path.join(out, 'cert.pem'), 'utf8'),
        readFile(path.join(out, 'privkey.pem'), 'utf8'),
      ]);
      return { certPem: leaf, keyPem: key };
    },
  };
}
