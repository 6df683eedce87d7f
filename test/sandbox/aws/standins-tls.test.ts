import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { GetCommandInvocationCommand, SendCommandCommand } from '@aws-sdk/client-ssm';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createClients } from '../../../lambdas/shared/clients';
import { Sandbox, type SeededTarget } from '../../../sandbox/index';

const DOMAIN = 'web.example.test';
const Bucket = 'understudy-sandbox-runs';
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
  const certbotLog = () => {
    const path = join(box(), 'var/log/letsencrypt/letsencrypt.log');
    return existsSync(path) ? readFileSync(path, 'utf8') : '';
  };

  /** Runs the script on the old box and waits (virtual time) for SSM to report it. */
  const run = async (commands: string[]) => {
    const sent = await aws.ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [seeded.oldInstanceId],
        Parameters: { commands },
      }),
    );
    const CommandId = sent.Command?.CommandId ?? '';
    for (;;) {
      await sandbox.clock.sleep(1_000);
      const invocation = await aws.ssm
        .send(new GetCommandInvocationCommand({ CommandId, InstanceId: seeded.oldInstanceId }))
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
