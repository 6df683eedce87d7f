import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AppResponder, ImageBehaviour, InstanceServerHandle, SandboxCaFiles } from '../contracts';
import { sandboxIdentitySigner } from '../identity';
import type { ModelContext } from './context';
import type { Ec2Model, InstanceRecord } from './ec2';
import type { EventsModel } from './events';
import type { SandboxRuntime } from './runtime';

const exec = promisify(execFile);
const LIBEXEC = join(__dirname, '..', 'standins', 'libexec');

/** Virtual durations of what happens inside a box. */
export const BoxTiming = {
  /** Default cloud-init duration from `running`. */
  bootMs: 60_000,
  /** The SSM agent registers (PingStatus Online) this long after `running`. */
  ssmAgentMs: 20_000,
  /** The readiness agent's progress period while cloud-init runs. */
  progressMs: 30_000,
} as const;

type CloudInitState = 'running' | 'done' | 'error' | 'recoverable';
type CloudInitOutcome = Exclude<CloudInitState, 'running'>;

const NGINX_301 =
  '<html>\r\n<head><title>301 Moved Permanently</title></head>\r\n<body>\r\n<center><h1>301 Moved Permanently</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';

/** How long `cloud-init status --wait` blocks on a boot that never ends: past any command timeout. */
const HUNG_WAIT_MS = 172_800_000;

interface Box {
  readonly instanceId: string;
  readonly dir: string;
  server?: InstanceServerHandle;
  cloudInit: CloudInitState;
  /** When cloud-init will end, and how; unset for a boot that hangs (or one long over). */
  cloudInitEnd?: { readonly at: number; readonly outcome: CloudInitOutcome };
  appStartedAt?: number;
  ssmOnlineAt: number;
  lastPing?: number;
  /** Which power-on this box is; a halted box's scheduled work checks it and does nothing. */
  power: number;
  on: boolean;
}

const CLOUD_INIT_ERRORS: Record<'error' | 'recoverable', string> = {
  error:
    "('scripts_user', RuntimeError('Runparts: 1 failures (part-001) in /var/lib/cloud/instance/scripts'))",
  recoverable:
    "('package_update_upgrade_install', ProcessExecutionError('Unexpected error while running command.'))",
};

/**
 * The inside of each simulated box: its directory, its web server, cloud-init, the web app, the SSM
 * agent and the readiness agent. A box powers on when EC2 reports `running` and off when it leaves it.
 */
export class Boxes {
  private readonly boxes = new Map<string, Box>();
  /** Virtual start of the Run Command script running on each box right now. */
  private readonly scripts = new Map<string, number>();
  private readonly dirs = new Map<string, string>();
  private readonly root: string;

  constructor(
    private readonly ctx: ModelContext,
    private readonly runtime: SandboxRuntime,
    private readonly ec2: Ec2Model,
    private readonly events: EventsModel,
    private readonly options: {
      agentBusName: () => string;
      rootDir: string;
      onServerChanged: (instanceId: string) => void;
    },
  ) {
    this.root = options.rootDir;
  }

  server(instanceId: string): InstanceServerHandle | undefined {
    const box = this.boxes.get(instanceId);
    return box?.on ? box.server : undefined;
  }

  /** The instance's root directory; it survives stop/start like an EBS root volume. */
  dirOf(instanceId: string): string {
    let dir = this.dirs.get(instanceId);
    if (!dir) {
      dir = mkdtempSync(join(this.root, `${instanceId}-`));
      for (const sub of ['etc', 'var/log', 'bin']) mkdirSync(join(dir, sub), { recursive: true });
      this.dirs.set(instanceId, dir);
    }
    return dir;
  }

  /**
   * The SSM agent as Systems Manager sees it: registered from ~20 s after `running` while the box is on;
   * Online while the box can reach SSM, ConnectionLost once it cannot (e.g. its public IP went away).
   */
  agent(instanceId: string): { status: 'Online' | 'ConnectionLost'; lastPing: number } | undefined {
    const box = this.boxes.get(instanceId);
    const instance = this.ec2.instances.get(instanceId);
    const now = this.ctx.clock.now();
    if (!box?.on || !instance || now < box.ssmOnlineAt) return undefined;
    if (this.ec2.reaches(instance, 'ssm')) {
      box.lastPing = now;
      return { status: 'Online', lastPing: now };
    }
    return box.lastPing === undefined ? undefined : { status: 'ConnectionLost', lastPing: box.lastPing };
  }

  /** `cloud-init status --format json` and its exit code for a state, as of `at`. */
  private cloudInitStatus(state: CloudInitState, at: number): { document: object; exitCode: number } {
    const errors = state === 'error' || state === 'recoverable' ? [CLOUD_INIT_ERRORS[state]] : [];
    const extended = state === 'recoverable' ? 'degraded done' : state === 'error' ? 'error - done' : state;
    return {
      document: {
        boot_status_code: 'enabled-by-generator',
        datasource: 'ec2',
        detail: state === 'running' ? 'Running in stage: modules-final' : 'DataSourceEc2Local',
        errors: state === 'error' ? errors : [],
        extended_status: extended,
        last_update: new Date(at).toUTCString(),
        recoverable_errors: state === 'recoverable' ? { WARNING: errors } : {},
        status: state === 'recoverable' ? 'done' : state,
      },
      exitCode: state === 'running' || state === 'done' ? 0 : state === 'error' ? 1 : 2,
    };
  }

  /** What `cloud-init status` reads on the box (the stand-in in sandbox/standins/cloud-init). */
  private writeCloudInit(box: Box, state: CloudInitState): void {
    const dir = join(box.dir, 'var', 'lib', 'cloud');
    mkdirSync(dir, { recursive: true });
    const { document, exitCode } = this.cloudInitStatus(state, this.ctx.clock.now());
    writeFileSync(join(dir, 'status.json'), JSON.stringify(document, null, 1));
    writeFileSync(join(dir, 'exit_code'), String(exitCode));
  }

  /**
   * For a script about to run on the box: while cloud-init runs, how long `cloud-init status --wait`
   * blocks from now and what it then prints and exits with, as the real command does (the stand-in
   * reads these from the environment).
   */
  cloudInitWait(instanceId: string): Record<string, string> {
    const box = this.boxes.get(instanceId);
    if (!box?.on || box.cloudInit !== 'running') return {};
    const end = box.cloudInitEnd;
    if (!end) return { SANDBOX_CLOUD_INIT_WAIT_MS: String(HUNG_WAIT_MS) };
    const { document, exitCode } = this.cloudInitStatus(end.outcome, end.at);
    return {
      SANDBOX_CLOUD_INIT_WAIT_MS: String(Math.max(0, end.at - this.ctx.clock.now())),
      SANDBOX_CLOUD_INIT_FINAL_STATUS: JSON.stringify(document),
      SANDBOX_CLOUD_INIT_FINAL_EXIT: String(exitCode),
    };
  }

  /**
   * nginx serves what is under etc/letsencrypt/live at start and after a reload (the stand-ins for
   * nginx and certbot leave var/run/nginx.reload): each certificate for every DNS name it covers.
   */
  installCertificates(instanceId: string): void {
    const box = this.boxes.get(instanceId);
    const server = box?.on ? box.server : undefined;
    if (!box || !server) return;
    const live = join(box.dir, 'etc', 'letsencrypt', 'live');
    if (!existsSync(live)) return;
    for (const name of readdirSync(live)) {
      const chain = join(live, name, 'fullchain.pem');
      const key = join(live, name, 'privkey.pem');
      if (!existsSync(chain) || !existsSync(key)) continue;
      const certPem = readFileSync(chain, 'utf8');
      const keyPem = readFileSync(key, 'utf8');
      let names = [name];
      try {
        const san = new X509Certificate(certPem).subjectAltName ?? '';
        const dns = san
          .split(',')
          .map((entry) => entry.trim())
          .filter((entry) => entry.startsWith('DNS:'))
          .map((entry) => entry.slice(4));
        if (dns.length > 0) names = dns;
      } catch {
        // An unreadable certificate is installed under its directory name; TLS clients will judge it.
      }
      for (const domain of names) server.installCertificate(domain, certPem, keyPem);
    }
  }

  /**
   * nginx reloads when a stand-in leaves var/run/nginx.reload, holding the virtual milliseconds the
   * script had declared by then (certbot's order comes before its reload). While the script runs the
   * clock stands still and only the script itself can connect, so a reload applies at its next
   * handshake (the local TLS check in the same script sees it). One nobody looked at during the
   * script applies once virtual time reaches the script's start plus that offset, so clients outside
   * see the certificate when certbot would really have finished.
   */
  beforeScript(instanceId: string): void {
    this.scripts.set(instanceId, this.ctx.clock.now());
  }

  /** Called after each Run Command script (see beforeScript). */
  afterScript(instanceId: string): void {
    const startedAt = this.scripts.get(instanceId) ?? this.ctx.clock.now();
    this.scripts.delete(instanceId);
    const offset = this.takeReload(instanceId);
    if (offset === undefined) return;
    const power = this.boxes.get(instanceId)?.power;
    const install = () => {
      if (this.boxes.get(instanceId)?.power === power) this.installCertificates(instanceId);
    };
    const delay = startedAt + offset - this.ctx.clock.now();
    if (delay > 0) this.ctx.after(delay, install);
    else install();
  }

  /** A handshake on the box while a script runs there: a reload the script asked for applies now. */
  private reloadDuringScript(instanceId: string): void {
    if (!this.scripts.has(instanceId)) return;
    if (this.takeReload(instanceId) !== undefined) this.installCertificates(instanceId);
  }

  /** Removes a pending reload mark and returns its offset in virtual ms (undefined when none). */
  private takeReload(instanceId: string): number | undefined {
    const box = this.boxes.get(instanceId);
    if (!box) return undefined;
    const marker = join(box.dir, 'var', 'run', 'nginx.reload');
    if (!existsSync(marker)) return undefined;
    const offset = Number(readFileSync(marker, 'utf8').trim() || '0');
    rmSync(marker, { force: true });
    return Number.isFinite(offset) && offset > 0 ? offset : 0;
  }

  /**
   * Gives the box the certbot lineage it would have after months of serving HTTPS: a certificate for
   * `domain` from the sandbox CA (valid `validDays` from a day ago, ECDSA P-256 as ca-issue makes them),
   * filed by the same script certbot's stand-in uses (archive/, live/ symlinks, renewal/<domain>.conf),
   * and served by nginx.
   */
  async seedCertbotLineage(
    instanceId: string,
    domain: string,
    ca: SandboxCaFiles,
    validDays = 90,
  ): Promise<void> {
    const dir = this.dirOf(instanceId);
    const work = join(dir, 'var', 'lib', 'letsencrypt');
    mkdirSync(work, { recursive: true });
    const issued = mkdtempSync(join(work, 'seed-'));
    try {
      await exec(join(LIBEXEC, 'ca-issue'), [ca.dir, String(validDays), issued, domain]);
      await exec(join(LIBEXEC, 'certbot-lineage'), [
        join(dir, 'etc', 'letsencrypt'),
        domain,
        issued,
        ca.certPath,
        'nginx',
        'nginx',
      ]);
    } finally {
      rmSync(issued, { recursive: true, force: true });
    }
    this.installCertificates(instanceId);
  }

  private behaviourOf(instance: InstanceRecord): ImageBehaviour {
    return this.ec2.image(instance.imageId)?.behaviour ?? { cloudInit: 'done', app: 'healthy' };
  }

  /**
   * Whether nginx on the box answers plain HTTP for `host` with a redirect to HTTPS: certbot's nginx
   * installer adds one per name (the certbot stand-in leaves a mark in var/lib/sandbox/nginx-redirect).
   */
  private redirectsToHttps(box: Box, host: string | undefined): boolean {
    const name = (host ?? '').replace(/:\d+$/, '').toLowerCase();
    if (!/^[a-z0-9.-]+$/.test(name) || name.includes('..')) return false;
    return existsSync(join(box.dir, 'var', 'lib', 'sandbox', 'nginx-redirect', name));
  }

  private responder(box: Box, behaviour: ImageBehaviour): AppResponder {
    const app = behaviour.app;
    return (request) => {
      if (!request.tls && this.redirectsToHttps(box, request.host)) {
        // nginx's own page for `return 301 https://$host$request_uri`; curl -f takes it as a success.
        return { status: 301, body: NGINX_301 };
      }
      if (app === 'broken') return { status: 500, body: 'internal server error\n' };
      if (app !== 'healthy') {
        const started = box.appStartedAt ?? this.ctx.clock.now();
        if (this.ctx.clock.now() >= started + app.healthyForMs)
          return { status: 500, body: 'internal server error\n' };
      }
      return { status: 200, body: `ok ${box.instanceId}\n` };
    };
  }

  /**
   * Powers a box on. `serving` is the seeded old box: its boot finished long ago and its app is up, so
   * cloud-init, the SSM agent and the app are ready at once and no readiness events are sent.
   */
  async powerOn(instance: InstanceRecord, options: { serving: boolean }): Promise<void> {
    const previous = this.boxes.get(instance.instanceId);
    const now = this.ctx.clock.now();
    const box: Box = {
      instanceId: instance.instanceId,
      dir: this.dirOf(instance.instanceId),
      cloudInit: options.serving ? 'done' : 'running',
      ...(options.serving ? { appStartedAt: now } : {}),
      ssmOnlineAt: options.serving ? now : now + BoxTiming.ssmAgentMs,
      power: (previous?.power ?? 0) + 1,
      on: true,
    };
    this.boxes.set(instance.instanceId, box);
    const behaviour = this.behaviourOf(instance);
    const server = await this.runtime.startInstanceServer(
      this.ctx.clock,
      options.serving ? this.responder(box, behaviour) : undefined,
      { beforeHandshake: () => this.reloadDuringScript(instance.instanceId) },
    );
    if (!box.on || this.ctx.closed) {
      await server.close();
      return;
    }
    box.server = server;
    this.installCertificates(instance.instanceId);
    this.options.onServerChanged(instance.instanceId);
    if (options.serving) {
      this.writeCloudInit(box, 'done');
      return;
    }
    this.writeCloudInit(box, 'running');

    const power = box.power;
    const alive = () => box.on && box.power === power && !this.ctx.closed;
    const outcome = behaviour.cloudInit;
    if (outcome !== 'hang') {
      const bootMs = behaviour.bootMs ?? BoxTiming.bootMs;
      box.cloudInitEnd = { at: this.ctx.clock.now() + bootMs, outcome };
      this.ctx.after(bootMs, () => {
        if (!alive()) return;
        this.finishCloudInit(instance, box, behaviour, outcome);
      });
    }
    if (behaviour.agent ?? true) this.scheduleProgress(instance, box, alive);
  }

  private finishCloudInit(
    instance: InstanceRecord,
    box: Box,
    behaviour: ImageBehaviour,
    outcome: CloudInitOutcome,
  ): void {
    box.cloudInit = outcome;
    delete box.cloudInitEnd;
    const exitCode = outcome === 'done' ? 0 : outcome === 'error' ? 1 : 2;
    const errors = outcome === 'error' || outcome === 'recoverable' ? [CLOUD_INIT_ERRORS[outcome]] : [];
    this.writeCloudInit(box, outcome);
    if (outcome === 'done' || outcome === 'recoverable') {
      box.appStartedAt = this.ctx.clock.now();
      box.server?.setResponder(this.responder(box, behaviour));
    }
    if (!(behaviour.agent ?? true)) return;
    const status = outcome === 'recoverable' ? 'degraded' : outcome;
    this.putAgentEvent(instance, outcome === 'error' ? 'Instance Failed' : 'Instance Ready', {
      status,
      exitCode,
      errors,
    });
  }

  private scheduleProgress(instance: InstanceRecord, box: Box, alive: () => boolean): void {
    this.ctx.after(BoxTiming.progressMs, () => {
      if (!alive() || box.cloudInit !== 'running') return;
      this.putAgentEvent(instance, 'Instance Progress', { status: 'running', errors: [] });
      this.scheduleProgress(instance, box, alive);
    });
  }

  /**
   * What the agent's `aws events put-events` does: nothing reaches the bus without a route out. The
   * final event carries the box's identity document and signature from IMDS, signed here with the
   * sandbox's own key (sandbox/identity.ts) where EC2 would use its Region's.
   */
  private putAgentEvent(
    instance: InstanceRecord,
    detailType: string,
    detail: { status: string; exitCode?: number; errors: string[] },
  ): void {
    if (!this.ec2.reaches(instance, 'events')) return;
    const identity =
      detailType === 'Instance Progress'
        ? undefined
        : sandboxIdentitySigner().identityOf({
            accountId: this.ctx.accountId,
            region: this.ctx.region,
            instanceId: instance.instanceId,
            imageId: instance.imageId,
            instanceType: instance.instanceType,
            availabilityZone: instance.availabilityZone,
            privateIp: instance.privateIp,
            pendingTime: instance.launchTime,
            architecture: instance.architecture,
          });
    this.events.put([
      {
        Source: 'understudy.agent',
        DetailType: detailType,
        EventBusName: this.options.agentBusName(),
        Resources: [`arn:aws:ec2:${this.ctx.region}:${this.ctx.accountId}:instance/${instance.instanceId}`],
        Detail: JSON.stringify({
          instanceId: instance.instanceId,
          ...detail,
          ...(identity ? { identity } : {}),
        }),
      },
    ]);
  }

  async powerOff(instance: InstanceRecord): Promise<void> {
    const box = this.boxes.get(instance.instanceId);
    if (!box) return;
    box.on = false;
    const server = box.server;
    delete box.server;
    this.options.onServerChanged(instance.instanceId);
    await server?.close();
  }

  async closeAll(): Promise<void> {
    const servers = [...this.boxes.values()].flatMap((box) => {
      box.on = false;
      const server = box.server;
      delete box.server;
      return server ? [server] : [];
    });
    await Promise.allSettled(servers.map((s) => s.close()));
  }
}
