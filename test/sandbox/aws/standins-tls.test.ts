import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { GetCommandInvocationCommand, SendCommandCommand } from '@aws-sdk/client-ssm';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { packScript } from '../../../lambdas/pack-certificate/pack-certificate';
import { localCheckCommands } from '../../../lambdas/prepare/prepare';
import { createClients } from '../../../lambdas/shared/clients';
import type { TargetConfig } from '../../../lambdas/shared/config';
import { TargetSchema } from '../../../lambdas/shared/config';
import { localTlsCheckCommands, presignUpload } from '../../../lambdas/shared/tls';
import { Sandbox, type SeededTarget } from '../../../sandbox/index';

const DOMAIN = 'web.example.test';
const Bucket = 'understudy-sandbox-runs';
const ACCOUNTS = 'etc/letsencrypt/accounts/acme-v02.api.letsencrypt.org/directory';
const CHECKSUMS = new Set(['x-amz-checksum-crc32', 'x-amz-sdk-checksum-algorithm', 'x-amz-checksum-mode']);
const careful = { expiresIn: 300, unhoistableHeaders: CHECKSUMS, unsignableHeaders: CHECKSUMS };

describe('TLS stand-ins on a simulated box (scripts sent with SSM Run Command)', () => {
  let sandbox: Sandbox;
  let seeded: SeededTarget;
  let aws: ReturnType<typeof createClients>;
  beforeEach(async () => {
    sandbox = await Sandbox.start();
    sandbox.createBucket(Bucket);
    seeded = await sandbox.seedTarget({ name: 'web', domain: DOMAIN });
    aws = createClients();
  });
  afterEach(() => sandbox.stop());

  const box = () => sandbox.instanceDir(seeded.oldInstanceId);
  const targetWith = (
    health: Record<string, unknown>,
    tls: Record<string, unknown> = { mode: 'restore' },
  ): TargetConfig =>
    TargetSchema.parse({
      name: 'web',
      domain: DOMAIN,
      allocationId: 'eipalloc-0123abcd',
      image: { imageId: 'ami-0123456789abcdef0' },
      tls,
      health: { path: '/healthz', ...health },
    });
  const certbotLog = () => {
    const path = join(box(), 'var/log/letsencrypt/letsencrypt.log');
    return existsSync(path) ? readFileSync(path, 'utf8') : '';
  };

  /** Runs the script on the old box (or another) and waits (virtual time) for SSM to report it. */
  const run = async (commands: string[], instanceId = seeded.oldInstanceId) => {
    const sent = await aws.ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [instanceId],
        Parameters: { commands },
      }),
    );
    const CommandId = sent.Command?.CommandId ?? '';
    for (;;) {
      await sandbox.clock.sleep(1_000);
      const invocation = await aws.ssm
        .send(new GetCommandInvocationCommand({ CommandId, InstanceId: instanceId }))
        .catch(() => undefined);
      if (invocation && !['Pending', 'InProgress', 'Delayed'].includes(invocation.Status ?? '')) {
        return {
          status: invocation.Status,
          code: invocation.ResponseCode,
          stdout: invocation.StandardOutputContent ?? '',
          stderr: invocation.StandardErrorContent ?? '',
        };
      }
    }
  };

  it('seeds the old box with a certbot lineage: live links into archive, a renewal config, ~90 days', () => {
    const live = join(box(), 'etc/letsencrypt/live', DOMAIN);
    const leaf = new X509Certificate(readFileSync(join(live, 'fullchain.pem')));
    const daysLeft = (Date.parse(leaf.validTo) - Date.now()) / 86_400_000;

    expect(readlinkSync(join(live, 'cert.pem'))).toBe(`../../archive/${DOMAIN}/cert1.pem`);
    expect(readlinkSync(join(live, 'privkey.pem'))).toBe(`../../archive/${DOMAIN}/privkey1.pem`);
    expect(readFileSync(join(box(), 'etc/letsencrypt/renewal', `${DOMAIN}.conf`), 'utf8')).toContain(
      `archive_dir = /etc/letsencrypt/archive/${DOMAIN}`,
    );
    expect(leaf.checkHost(DOMAIN)).toBe(DOMAIN);
    expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(daysLeft).toBeGreaterThan(88);
    expect(daysLeft).toBeLessThan(90.01);
  });

  it("seeds the ACME account the renewal config names, filed as certbot does, its id the MD5 of the key's public half", () => {
    const ids = readdirSync(join(box(), ACCOUNTS));
    const id = ids[0] ?? '';
    const dir = join(box(), ACCOUNTS, id);
    const jwk = JSON.parse(readFileSync(join(dir, 'private_key.json'), 'utf8'));
    const publicDer = createPublicKey(createPrivateKey({ key: jwk, format: 'jwk' })).export({
      type: 'spki',
      format: 'der',
    });

    expect(ids).toEqual([expect.stringMatching(/^[0-9a-f]{32}$/)]);
    expect(readdirSync(dir).sort()).toEqual(['meta.json', 'private_key.json', 'regr.json']);
    expect(createHash('md5').update(publicDer).digest('hex')).toBe(id);
    expect(JSON.parse(readFileSync(join(dir, 'regr.json'), 'utf8')).uri).toMatch(
      /^https:\/\/acme-v02\.api\.letsencrypt\.org\/acme\/acct\/\d+$/,
    );
    expect(readFileSync(join(box(), 'etc/letsencrypt/renewal', `${DOMAIN}.conf`), 'utf8')).toContain(
      `account = ${id}\n`,
    );
  });

  it('uploads a tar of the lineage with curl through a presigned PUT URL, as the pack script does', async () => {
    const Key = 'tls/run-1/abc.tar.gz';
    const url = await getSignedUrl(
      aws.s3,
      new PutObjectCommand({ Bucket, Key, ContentType: 'application/gzip' }),
      { ...careful, signableHeaders: new Set(['content-type']) },
    );

    const result = await run([
      'set -euo pipefail',
      'umask 077',
      'transfer="$(mktemp)"',
      `tar -C etc/letsencrypt -czf "$transfer" 'live/${DOMAIN}' 'archive/${DOMAIN}' 'renewal/${DOMAIN}.conf'`,
      'sha256sum "$transfer" | cut -d" " -f1',
      `curl -fsS --max-time 60 -X PUT -H 'Content-Type: application/gzip' --upload-file "$transfer" '${url}'`,
    ]);

    expect(result).toMatchObject({ status: 'Success', code: 0 });
    const stored = sandbox.s3.details(Bucket, Key);
    expect(stored?.contentType).toBe('application/gzip');
    expect(
      createHash('sha256')
        .update(stored?.bytes ?? Buffer.alloc(0))
        .digest('hex'),
    ).toBe(result.stdout.trim());
    expect(sandbox.calls.filter((c) => c.via === 'presigned-url').map((c) => c.action)).toEqual([
      'PutObject',
    ]);
  });

  it('the pack script uploads only the current version, the live links, the renewal config and the account it names', async () => {
    sandbox.allowDns01('web');
    // A renewal: version 2 is current, version 1 (and its private key) only history.
    const renewed = await run([
      `certbot certonly -a dns-route53 -d '${DOMAIN}' --non-interactive --agree-tos -m 'ops@example.test'`,
    ]);
    const Key = 'tls/run-1/pack.tar.gz';

    const packed = await run(packScript(targetWith({}), await presignUpload(aws.s3, Bucket, Key)));

    expect(renewed.code).toBe(0);
    expect(packed).toMatchObject({ code: 0, stderr: '' });
    const id = readdirSync(join(box(), ACCOUNTS))[0] ?? '';
    const account = `accounts/acme-v02.api.letsencrypt.org/directory/${id}`;
    const members = execFileSync('tar', ['-tzf', '-'], { input: sandbox.s3.details(Bucket, Key)?.bytes })
      .toString()
      .split('\n')
      .filter((m) => m !== '')
      .sort();
    expect(members).toEqual(
      [
        `live/${DOMAIN}/`,
        ...['README', 'cert.pem', 'chain.pem', 'fullchain.pem', 'privkey.pem'].map(
          (f) => `live/${DOMAIN}/${f}`,
        ),
        ...['cert2.pem', 'chain2.pem', 'fullchain2.pem', 'privkey2.pem'].map((f) => `archive/${DOMAIN}/${f}`),
        `renewal/${DOMAIN}.conf`,
        `${account}/`,
        ...['meta.json', 'private_key.json', 'regr.json'].map((f) => `${account}/${f}`),
      ].sort(),
    );
  });

  it('the pack script stops with a one-line reason, uploading nothing, when the renewal config names no account or a missing one', async () => {
    const conf = join(box(), 'etc/letsencrypt/renewal', `${DOMAIN}.conf`);
    const original = readFileSync(conf, 'utf8');
    const url = await presignUpload(aws.s3, Bucket, 'tls/run-1/pack.tar.gz');

    writeFileSync(conf, original.replace(/^account = .*$/m, 'account = ../../../../etc'));
    const forged = await run(packScript(targetWith({}), url));
    writeFileSync(conf, original);
    rmSync(join(box(), ACCOUNTS), { recursive: true });
    const missing = await run(packScript(targetWith({}), url));

    expect(forged.code).toBe(1);
    expect(forged.stderr.trim()).toBe(
      `certificate pack failed: renewal/${DOMAIN}.conf names no ACME account (expected a line "account = " and 32 hex digits)`,
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe(
      `certificate pack failed: the ACME account that renewal/${DOMAIN}.conf names is not under /etc/letsencrypt/accounts/*/directory/`,
    );
    expect(sandbox.objectKeys(Bucket)).toEqual([]);
  });

  it('downloads with curl -o through a presigned GET URL, and fails (-f) once it has expired', async () => {
    const Key = 'tls/run-1/abc.tar.gz';
    sandbox.s3.seedObject(Bucket, Key, 'the transfer');
    const url = await getSignedUrl(aws.s3, new GetObjectCommand({ Bucket, Key }), careful);

    const fresh = await run([`curl -fsS --max-time 60 -o got '${url}'`, 'cat got']);
    await sandbox.clock.sleep(300_000);
    const stale = await run([`curl -fsS --max-time 60 -o late '${url}'`]);

    expect(fresh).toMatchObject({ code: 0, stdout: 'the transfer' });
    expect(stale.code).toBe(22);
    expect(stale.stderr).toContain('403');
  });

  it('trusts the sandbox CA for https to a name pinned to loopback, so the local TLS check is real', async () => {
    const result = await run([
      `curl -fsS --max-time 10 --resolve '${DOMAIN}:443:127.0.0.1' -o /dev/null -w '%{http_code}' 'https://${DOMAIN}/healthz'`,
      `openssl x509 -checkend ${14 * 86_400} -noout -in 'etc/letsencrypt/live/${DOMAIN}/fullchain.pem'`,
    ]);
    const wrongName = await run([
      `curl -fsS --max-time 10 --resolve 'other.example.test:443:127.0.0.1' -o /dev/null 'https://other.example.test/healthz'`,
    ]);

    expect(result).toMatchObject({ code: 0, stdout: expect.stringContaining('200') });
    expect(wrongName.code).not.toBe(0);
  });

  it('certbot install wires an existing lineage into nginx without an order, and fails for a missing one', async () => {
    const installed = await run([`certbot install --nginx --cert-name '${DOMAIN}' --non-interactive`]);
    const missing = await run([`certbot install --nginx --cert-name 'nope.example.test' --non-interactive`]);

    expect(installed.code).toBe(0);
    expect(missing.code).toBe(1);
    expect(certbotLog()).toContain(`install: ${DOMAIN} into nginx`);
    expect(certbotLog()).not.toContain('order:');
  });

  it('certbot install fails as certbot does when the lineage has no renewal config, even with live/ in place', async () => {
    rmSync(join(box(), 'etc/letsencrypt/renewal', `${DOMAIN}.conf`));

    const result = await run([`certbot install --nginx --cert-name '${DOMAIN}' --non-interactive`]);

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Path to certificate or key was not defined');
  });

  it("certbot's nginx installer makes plain HTTP for the domain redirect to HTTPS, so an app check over HTTP sees a 301 page", async () => {
    const target = targetWith({ bodyContains: 'ok i-' });
    const overHttp = `curl -fsS --max-time 10 -H 'Host: ${DOMAIN}' -w '%{http_code}' 'http://127.0.0.1/healthz'`;
    const before = await run([overHttp]);
    const installed = await run([`certbot install --nginx --cert-name '${DOMAIN}' --non-interactive`]);
    const after = await run([overHttp]);
    const otherHost = await run([
      `curl -fsS --max-time 10 -H 'Host: other.example.test' 'http://127.0.0.1/'`,
    ]);
    const check = await run(['set -euo pipefail', ...localCheckCommands(target)]);

    expect(before).toMatchObject({ code: 0, stdout: expect.stringMatching(/^ok i-.*200$/s) });
    expect(installed.code).toBe(0);
    // curl -f takes a 301 as success: only the body gives the redirect away.
    expect(after).toMatchObject({ code: 0, stdout: expect.stringContaining('301 Moved Permanently') });
    expect(after.stdout).toMatch(/301$/);
    expect(otherHost.stdout).toContain('ok i-');
    expect(check).toMatchObject({ code: 0 });
  });

  it("the local TLS check reads the expiry of the certificate nginx serves, through openssl's -connect to this box", async () => {
    const ok = await run([
      'set -euo pipefail',
      ...localTlsCheckCommands(targetWith({ certificateMinDaysLeft: 80 })),
    ]);
    // The file on disk is replaced by a certificate that lasts long enough; nginx still serves the old one.
    const live = join(box(), 'etc/letsencrypt/live', DOMAIN);
    const issued = join(box(), 'var/lib/letsencrypt/longer');
    execFileSync(join(__dirname, '../../../sandbox/standins/libexec/ca-issue'), [
      sandbox.ca.dir,
      '400',
      issued,
      DOMAIN,
    ]);
    writeFileSync(join(live, 'fullchain.pem'), readFileSync(join(issued, 'cert.pem')));
    const served = await run([
      'set -euo pipefail',
      ...localTlsCheckCommands(targetWith({ certificateMinDaysLeft: 120 })),
    ]);

    expect(ok).toMatchObject({ code: 0, stdout: expect.stringContaining('Certificate will not expire') });
    expect(served.code).toBe(1);
    expect(served.stderr).toContain(
      `the certificate nginx serves for ${DOMAIN} expires within 120 days (health.certificateMinDaysLeft)`,
    );
  });

  it('certbot renew --dry-run succeeds with the account the renewal config names, and fails as certbot does without it', async () => {
    const id = readdirSync(join(box(), ACCOUNTS))[0] ?? '';
    const withAccount = await run(['certbot renew --dry-run']);
    rmSync(join(box(), ACCOUNTS, id), { recursive: true });
    const without = await run(['certbot renew --dry-run']);

    expect(withAccount).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('Congratulations, all simulated renewals succeeded'),
    });
    expect(without.code).toBe(1);
    expect(without.stderr).toContain(
      `Failed to renew certificate ${DOMAIN} with error: Account at /etc/letsencrypt/accounts/acme-v02.api.letsencrypt.org/directory/${id} does not exist`,
    );
    expect(without.stderr).toContain('All simulated renewals failed.');
    expect(certbotLog()).not.toContain('order:');
  });

  it('certbot renew skips a lineage that is not due without loading its account, and renews a due one as a new version', async () => {
    rmSync(join(box(), 'etc/letsencrypt/accounts'), { recursive: true });
    const notDue = await run(['certbot renew']);
    const due = await sandbox.seedTarget({
      name: 'api',
      domain: 'api.example.test',
      certificate: { validDays: 10 },
    });
    const renewed = await run(['certbot renew'], due.oldInstanceId);

    expect(notDue).toMatchObject({ code: 0, stdout: expect.stringContaining('No renewals were attempted.') });
    expect(notDue.stdout).toContain(`/etc/letsencrypt/live/${DOMAIN}/fullchain.pem expires on `);
    expect(renewed).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('Congratulations, all renewals succeeded'),
    });
    const le = join(sandbox.instanceDir(due.oldInstanceId), 'etc/letsencrypt');
    expect(readlinkSync(join(le, 'live/api.example.test/fullchain.pem'))).toBe(
      '../../archive/api.example.test/fullchain2.pem',
    );
  });

  it('certbot dns-01 through Route 53 fails with AccessDenied unless the instance profile is allowed', async () => {
    const name = 'api.example.test';
    const command = `certbot run -a dns-route53 -i nginx -d '${name}' --non-interactive --agree-tos -m 'ops@example.test' --keep-until-expiring`;

    const refused = await run([command]);
    sandbox.allowDns01('web');
    const issued = await run([command]);

    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('AccessDenied');
    expect(issued.code).toBe(0);
    const le = join(box(), 'etc/letsencrypt');
    expect(readlinkSync(join(le, 'live', name, 'fullchain.pem'))).toBe(
      `../../archive/${name}/fullchain1.pem`,
    );
    expect(readFileSync(join(le, 'renewal', `${name}.conf`), 'utf8')).toContain(
      'authenticator = dns-route53',
    );
    const leaf = new X509Certificate(readFileSync(join(le, 'live', name, 'cert.pem')));
    expect(leaf.checkHost(name)).toBe(name);
    expect(leaf.verify(new X509Certificate(sandbox.ca.certPem).publicKey)).toBe(true);
    expect(certbotLog().match(/^order: /gm)).toHaveLength(2);
  });

  it('certbot --keep-until-expiring keeps a lineage with more than 30 days left: no order', async () => {
    sandbox.allowDns01('web');

    const kept = await run([
      `certbot run -a dns-route53 -i nginx -d '${DOMAIN}' --non-interactive --agree-tos -m 'ops@example.test' --keep-until-expiring`,
    ]);

    expect(kept.code).toBe(0);
    expect(kept.stdout).toContain('not yet due for renewal');
    expect(certbotLog()).not.toContain('order:');
  });
});
