import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { installClock, type SandboxClock } from '../../../sandbox/clock';
import type { InstanceServerHandle, SandboxCaFiles } from '../../../sandbox/contracts';
import { startInstanceServer } from '../../../sandbox/net';
import { runShellScript } from '../../../sandbox/shell';
import { createCa } from '../../../sandbox/tls';

const DOMAIN = 'shop.example.com';
const realSetTimeout = globalThis.setTimeout;

describe('SSM shell scripts on a simulated box', () => {
  let root: string;
  let ca: SandboxCaFiles;
  let clock: SandboxClock;
  let box: string;
  let boxes = 0;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'understudy-shell-'));
    ca = await createCa(path.join(root, 'ca'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });
  beforeEach(async () => {
    clock = installClock();
    box = path.join(root, `i-${++boxes}`);
    await mkdir(box, { recursive: true });
  });
  afterEach(() => clock.uninstall());

  const run = (commands: string[], env: Record<string, string> = {}) =>
    runShellScript(clock, { instanceDir: box, commands, env });

  it('runs the exact commands in the box directory and reports exit code, stdout and stderr', async () => {
    const result = await run(
      ['echo "hello $GREETING" > greeting.txt', 'cat greeting.txt', 'echo oops >&2', 'exit 3'],
      {
        GREETING: 'world',
      },
    );
    expect(result).toEqual({ exitCode: 3, stdout: 'hello world\n', stderr: 'oops\n', virtualMs: 0 });
    expect(await readFile(path.join(box, 'greeting.txt'), 'utf8')).toBe('hello world\n');
  });

  it('keeps running after a failing command unless the script says set -e, as SSM does', async () => {
    expect((await run(['false', 'echo after'])).exitCode).toBe(0);
    expect((await run(['set -e', 'false', 'echo after'])).exitCode).toBe(1);
  });

  it('holds virtual time while the script runs', async () => {
    let timerFiredAt: number | undefined;
    setTimeout(() => {
      timerFiredAt = clock.elapsed();
    }, 5);
    const running = run(['sleep 0.2']);
    await new Promise((resolve) => realSetTimeout(resolve, 100));
    expect(timerFiredAt).toBeUndefined();
    expect(clock.inFlight()).toHaveLength(1);
    await running;
    await clock.sleep(10);
    expect(timerFiredAt).toBe(5);
  });

  describe('with the box web server', () => {
    let server: InstanceServerHandle;
    beforeEach(async () => {
      server = await startInstanceServer(clock, (request) => ({
        status: 200,
        body: `app saw ${request.method} ${request.path} host=${request.host} tls=${request.tls}`,
      }));
    });
    afterEach(() => server.close());
    const ports = () => ({
      SANDBOX_HTTP_PORT: String(server.httpPort),
      SANDBOX_HTTPS_PORT: String(server.httpsPort),
    });

    it('reaches the box web server when a script curls localhost', async () => {
      const result = await run(
        ['curl -fsS http://localhost/health', 'echo', 'curl -fsS http://127.0.0.1:8080/ready'],
        ports(),
      );
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toBe(
        'app saw GET /health host=localhost tls=false\napp saw GET /ready host=127.0.0.1:8080 tls=false',
      );
    });

    it('reaches the box over HTTPS for a name pinned to loopback, checking the served certificate', async () => {
      const leaf = await ca.issue(DOMAIN);
      server.installCertificate(DOMAIN, leaf.certPem, leaf.keyPem);
      const result = await run(
        [`curl -fsS --cacert "$CA" --resolve ${DOMAIN}:443:127.0.0.1 https://${DOMAIN}/`],
        {
          ...ports(),
          CA: ca.certPath,
        },
      );
      expect(result).toMatchObject({ exitCode: 0, stdout: `app saw GET / host=${DOMAIN} tls=true` });
    });

    it('fails like curl does when the app is not listening', async () => {
      server.setResponder(undefined);
      const result = await run(['curl -fsS http://localhost/health'], ports());
      expect(result.exitCode).not.toBe(0);
      expect(result.stderr).toMatch(/curl: \(\d+\)/);
    });
  });

  it('refuses connections to localhost when the box has no web server', async () => {
    const result = await run(['curl -fsS http://localhost/']);
    expect(result.exitCode).toBe(7);
  });

  describe('certbot', () => {
    const caEnv = () => ({ SANDBOX_CA_DIR: ca.dir });

    it('fails the http-01 challenge when the Elastic IP does not point at this box', async () => {
      const result = await run(
        [`certbot certonly --nginx -n --agree-tos -m ops@example.com -d ${DOMAIN}`],
        caEnv(),
      );
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(`Domain: ${DOMAIN}`);
      expect(result.stderr).toContain('Some challenges have failed.');
      await expect(stat(path.join(box, 'etc/letsencrypt/live', DOMAIN))).rejects.toThrow(/ENOENT/);
    });

    it('issues a certificate for the domain, signed by the sandbox CA, and declares its virtual time', async () => {
      const result = await run([`certbot certonly --nginx -n --agree-tos -m ops@example.com -d ${DOMAIN}`], {
        ...caEnv(),
        SANDBOX_EIP_HERE: '1',
      });
      expect(result).toMatchObject({ exitCode: 0, virtualMs: 20_000 });
      const live = path.join(box, 'etc/letsencrypt/live', DOMAIN);
      const fullchain = await readFile(path.join(live, 'fullchain.pem'), 'utf8');
      const leaf = new X509Certificate(fullchain);
      expect(leaf.checkHost(DOMAIN)).toBe(DOMAIN);
      expect(leaf.checkHost('other.example.com')).toBeUndefined();
      expect(leaf.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
      expect(
        leaf.checkPrivateKey(createPrivateKey(await readFile(path.join(live, 'privkey.pem'), 'utf8'))),
      ).toBe(true);
      // Let's Encrypt certificates last 90 days.
      const daysLeft = (Date.parse(leaf.validTo) - Date.now()) / 86_400_000;
      expect(daysLeft).toBeGreaterThan(89);
      expect(daysLeft).toBeLessThan(90.01);
    });
  });

  it('adds up the virtual time declared by several stand-ins', async () => {
    await mkdir(path.join(box, 'var/lib/cloud'), { recursive: true });
    await writeFile(path.join(box, 'var/lib/cloud/status.json'), '{"status": "done", "errors": []}');
    await writeFile(path.join(box, 'var/lib/cloud/exit_code'), '0');
    const result = await run(
      ['cloud-init status --wait --format json', 'echo 500 >> "$SANDBOX_VTIME_FILE"'],
      {
        SANDBOX_CLOUD_INIT_WAIT_MS: '45000',
      },
    );
    expect(result).toMatchObject({ exitCode: 0, virtualMs: 45_500 });
    expect(JSON.parse(result.stdout)).toEqual({ status: 'done', errors: [] });
  });

  it('reports cloud-init errors through its exit code', async () => {
    await mkdir(path.join(box, 'var/lib/cloud'), { recursive: true });
    await writeFile(path.join(box, 'var/lib/cloud/status.json'), '{"status": "error"}');
    await writeFile(path.join(box, 'var/lib/cloud/exit_code'), '1');
    const result = await run(['cloud-init status --wait']);
    expect(result).toMatchObject({ exitCode: 1, stdout: 'status: error\n' });
  });

  it('records systemctl and aws calls and marks an nginx reload', async () => {
    const result = await run([
      'set -e',
      'nginx -t',
      'nginx -s reload',
      'systemctl restart app.service',
      'systemctl is-active --quiet app.service',
      'aws s3 cp s3://bucket/key /tmp/x',
    ]);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toContain('test is successful');
    expect(await readFile(path.join(box, 'var/log/systemctl.log'), 'utf8')).toBe(
      'restart app.service\nis-active --quiet app.service\n',
    );
    expect(await readFile(path.join(box, 'var/log/aws.log'), 'utf8')).toBe('s3 cp s3://bucket/key /tmp/x\n');
    await expect(stat(path.join(box, 'var/run/nginx.reload'))).resolves.toBeDefined();
  });
});
