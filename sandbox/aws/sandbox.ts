import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { _InstanceType } from '@aws-sdk/client-ec2';
import type { ServiceName } from '../../lambdas/shared/clients';
import { addTrustedCa } from '../../lambdas/shared/http';
import type {
  AddressProxyHandle,
  CallRecord,
  FaultRule,
  ImageBehaviour,
  PublishedMessage,
  SandboxApi,
  SandboxCaFiles,
  SeededTarget,
  SeedTargetOptions,
  ServedCertificate,
  ShellResult,
  StateMachineRegistration,
  VirtualClock,
} from '../contracts';
import { Boxes } from './boxes';
import { CloudFormationModel } from './cloudformation';
import type { ModelContext } from './context';
import { DynamoDbModel } from './dynamodb';
import { Ec2Model, type EgressKind } from './ec2';
import { awsError } from './errors';
import { EventsModel, type RuleTarget } from './events';
import { IdFactory } from './ids';
import {
  type CommandRouter,
  currentSandbox,
  installSandboxPlugin,
  SANDBOX_CREDENTIALS,
  setCurrentSandbox,
} from './plugin';
import type { SandboxRuntime } from './runtime';
import { S3Model } from './s3';
import type { S3EndpointHandle } from './s3-http';
import { type RoleRequest, SchedulerModel } from './scheduler';
import { SfnModel } from './sfn';
import { SnsModel } from './sns';
import { SsmModel } from './ssm';

export interface SandboxOptions {
  readonly region?: string;
  readonly accountId?: string;
  /** An installed clock to use; by default the sandbox installs its own and uninstalls it on stop. */
  readonly clock?: VirtualClock;
  /** The machine-facing parts; by default those registered by sandbox/index.ts. */
  readonly runtime?: SandboxRuntime;
  /**
   * The bus the readiness agent baked into the AMIs puts its events on. Default: `EVENT_BUS_NAME` from
   * the environment when the event is sent (what the stack would hand the instance), else `understudy`.
   */
  readonly agentBusName?: string;
}

let defaultRuntime: SandboxRuntime | undefined;
/** sandbox/index.ts registers the real runtime here. */
export const useDefaultRuntime = (runtime: SandboxRuntime): void => {
  defaultRuntime = runtime;
};

type Handler = (input: Record<string, unknown>) => unknown;
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const READ_ONLY = /^(Describe|Get|List|Head)/;
const ARM_TYPES = /^(t4g|m6g|m7g|c6g|c7g|r6g|r7g)\./;

/**
 * A simulated AWS account in this process. Every SDK client from lambdas/shared/clients.ts is routed to
 * the current sandbox's models; calls are logged, can be made to fail, and run on the virtual clock.
 */
export class Sandbox implements SandboxApi, CommandRouter {
  readonly calls: CallRecord[] = [];
  /** Failures of background work (event targets excepted: see `events.targetErrors`); `stop()` throws them. */
  readonly backgroundErrors: unknown[] = [];
  readonly ec2: Ec2Model;
  readonly ssm: SsmModel;
  readonly s3: S3Model;
  readonly sns: SnsModel;
  readonly sfn: SfnModel;
  readonly events: EventsModel;
  readonly dynamodb: DynamoDbModel;
  readonly cloudformation: CloudFormationModel;
  readonly scheduler: SchedulerModel;
  readonly boxes: Boxes;

  private readonly faults: { rule: FaultRule; seen: number }[] = [];
  private readonly proxies = new Map<string, AddressProxyHandle>();
  private readonly unroutes: (() => void)[] = [];
  private readonly powering = new Map<string, Promise<void>>();
  private readonly handlers: Record<ServiceName, Record<string, Handler>>;
  private readonly ctx: ModelContext;
  private readonly startedAt: number;
  private network:
    | { vpcId: string; subnets: Record<EgressKind, string>; securityGroupId: string }
    | undefined;
  private closed = false;
  private seq = 0;
  private endpoint: S3EndpointHandle | undefined;
  /** Instance profiles whose role may answer dns-01 challenges in the domain's hosted zone. */
  private readonly dns01Profiles = new Set<string>();
  /** The instance profile of each seeded target, by target name. */
  private readonly seededProfiles = new Map<string, string>();

  private constructor(
    readonly clock: VirtualClock,
    readonly region: string,
    readonly accountId: string,
    private readonly agentBus: string | undefined,
    private readonly runtime: SandboxRuntime,
    private readonly ownsClock: boolean,
    private readonly rootDir: string,
    readonly ca: SandboxCaFiles,
  ) {
    this.startedAt = clock.now();
    const sandbox = this;
    this.ctx = {
      clock,
      ids: new IdFactory(`${accountId}/${region}`),
      region,
      accountId,
      get closed() {
        return sandbox.closed;
      },
      after: (ms, fn) => {
        this.clock
          .sleep(ms)
          .then(() => (this.closed ? undefined : this.clock.track(Promise.resolve().then(fn))))
          .catch((error: unknown) => this.backgroundErrors.push(error));
      },
      background: (work) => {
        this.clock.track(work).catch((error: unknown) => this.backgroundErrors.push(error));
      },
      spawn: (fn, onError) => {
        const started = new Promise<void>((resolve) => {
          queueMicrotask(() => {
            try {
              Promise.resolve(fn()).catch(onError);
            } catch (error) {
              onError(error);
            }
            resolve();
          });
        });
        this.clock.track(started).catch((error: unknown) => this.backgroundErrors.push(error));
      },
    };
    this.ec2 = new Ec2Model(this.ctx);
    this.events = new EventsModel(this.ctx);
    this.s3 = new S3Model(this.ctx);
    this.sns = new SnsModel(this.ctx, this.startedAt);
    this.sfn = new SfnModel(this.ctx);
    this.dynamodb = new DynamoDbModel(this.ctx);
    this.cloudformation = new CloudFormationModel(this.ctx);
    this.scheduler = new SchedulerModel(this.ctx, {
      invoke: (service, action, input) => this.dispatch(service, action, input, 'scheduler'),
      requestsFor: (service, action, input) => this.schedulerRequests(service, action, input),
    });
    this.boxes = new Boxes(this.ctx, runtime, this.ec2, this.events, {
      agentBusName: () => this.agentBusName,
      rootDir: join(rootDir, 'instances'),
      onServerChanged: (instanceId) => this.repointProxies(instanceId),
    });
    this.ssm = new SsmModel(this.ctx, this.ec2, {
      agent: (instanceId) => this.boxes.agent(instanceId),
      run: (instanceId, commands) => this.runScript(instanceId, commands),
      changed: ({ name, arn, type, operation }) =>
        this.events.deliverServiceEvent({
          source: 'aws.ssm',
          detailType: 'Parameter Store Change',
          detail: { operation, name, type, description: '' },
          resources: [arn],
        }),
    });
    this.ec2.setHooks({
      onRunning: (instance, options) => {
        const work = this.boxes.powerOn(instance, options);
        this.powering.set(instance.instanceId, work);
        return work;
      },
      onHalt: (instance) => this.boxes.powerOff(instance),
      onAddressMoved: (allocationId) => this.repointProxy(allocationId),
    });
    const table = <T extends object>(actions: T) => actions as unknown as Record<string, Handler>;
    this.handlers = {
      ec2: table(this.ec2.actions),
      ssm: table(this.ssm.actions),
      s3: table(this.s3.actions),
      sns: table(this.sns.actions),
      sfn: table(this.sfn.actions),
      events: table(this.events.actions),
      dynamodb: table(this.dynamodb.actions),
      cloudformation: table(this.cloudformation.actions),
      scheduler: table(this.scheduler.actions),
    };
  }

  /** Starts a sandbox and makes it the one every SDK client talks to. */
  static async start(options: SandboxOptions = {}): Promise<Sandbox> {
    const runtime = options.runtime ?? defaultRuntime;
    if (!runtime) {
      throw new Error(
        'Understudy sandbox: no runtime; import Sandbox from sandbox/index.ts or pass options.runtime',
      );
    }
    installSandboxPlugin();
    const clock = options.clock ?? runtime.installClock();
    const rootDir = mkdtempSync(join(tmpdir(), 'understudy-sandbox-'));
    mkdirSync(join(rootDir, 'instances'));
    const caDir = join(rootDir, 'ca');
    mkdirSync(caDir);
    const ca = await clock.track(runtime.createCa(caDir));
    addTrustedCa(ca.certPem);
    const region = options.region ?? process.env.AWS_REGION ?? 'eu-west-1';
    // Clients resolve their region (and endpoints) before a command reaches the sandbox: give them one.
    process.env.AWS_REGION ??= region;
    const sandbox = new Sandbox(
      clock,
      region,
      options.accountId ?? '123456789012',
      options.agentBusName,
      runtime,
      options.clock === undefined,
      rootDir,
      ca,
    );
    // Presigned S3 URLs: signed by the SDK with the sandbox's credentials, checked here with the same.
    sandbox.endpoint = await clock.track(
      runtime.startS3Endpoint(clock, {
        region,
        credentials: SANDBOX_CREDENTIALS,
        s3: { handle: (action, input) => sandbox.dispatch('s3', action, input, 'presigned-url') },
      }),
    );
    setCurrentSandbox(sandbox);
    return sandbox;
  }

  /** Where presigned S3 URLs are served (`http://127.0.0.1:<port>`); boxes get it as SANDBOX_S3_ENDPOINT. */
  get s3Endpoint(): string {
    if (!this.endpoint) throw new Error('Understudy sandbox: the S3 endpoint is not running');
    return this.endpoint.url;
  }

  get agentBusName(): string {
    return this.agentBus ?? process.env.EVENT_BUS_NAME ?? 'understudy';
  }

  get messages(): readonly PublishedMessage[] {
    return this.sns.messages;
  }

  // -------------------------------------------------------------------------------------------------
  // Routing, call log, faults
  // -------------------------------------------------------------------------------------------------

  private matchFault(service: ServiceName, action: string): FaultRule['fault'] | undefined {
    for (const entry of this.faults) {
      if (entry.rule.service !== service || entry.rule.action !== action) continue;
      entry.seen += 1;
      if (entry.rule.nth === undefined || entry.rule.nth === entry.seen) return entry.rule.fault;
    }
    return undefined;
  }

  async dispatch(
    service: ServiceName,
    action: string,
    input: Record<string, unknown>,
    via?: CallRecord['via'],
  ): Promise<Record<string, unknown>> {
    if (this.closed)
      throw new Error(`Understudy sandbox: ${service}:${action} called after the sandbox stopped`);
    // Schedules whose time has come fire before the account answers anything else (scheduler.ts).
    // Checked synchronously, so that a call with nothing due is recorded at once, as before.
    if (via !== 'scheduler' && this.scheduler.hasDue()) await this.scheduler.fireDue();
    const record: Mutable<CallRecord> = {
      seq: ++this.seq,
      at: this.clock.now() - this.startedAt,
      service,
      action,
      input: { ...input },
      mutating: !READ_ONLY.test(action) && input.DryRun !== true,
      ...(via ? { via } : {}),
    };
    this.calls.push(record);
    const fault = this.matchFault(service, action);
    // A hung call is deliberately not tracked: the clock keeps moving so the caller's timeout can fire.
    if (fault === 'hang') {
      record.error = 'hang';
      return new Promise<never>(() => {});
    }
    const work = (async () => {
      if (fault) {
        throw awsError(service, fault.error, fault.message ?? `${fault.error} (injected)`, fault.httpStatus);
      }
      const handler = this.handlers[service][action];
      if (!handler) {
        throw awsError(service, 'InvalidAction', `The sandbox does not model ${service}:${action}`, 400);
      }
      return (await handler(input)) as Record<string, unknown>;
    })();
    try {
      return await this.clock.track(work);
    } catch (error) {
      record.error = (error as Error)?.name ?? 'Error';
      throw error;
    }
  }

  /** What IAM asks a schedule's execution role for a universal target's call: one request per instance. */
  private schedulerRequests(
    service: ServiceName,
    action: string,
    input: Record<string, unknown>,
  ): RoleRequest[] {
    if (service !== 'ec2') return [{ action: `${service}:${action}`, resource: '*', context: {} }];
    const ids = Array.isArray(input.InstanceIds) ? (input.InstanceIds as string[]) : [];
    return ids.map((id) => {
      const tags = this.ec2.instances.get(id)?.tags ?? new Map<string, string>();
      return {
        action: `ec2:${action}`,
        resource: `arn:aws:ec2:${this.region}:${this.accountId}:instance/${id}`,
        context: Object.fromEntries([...tags].map(([k, v]) => [`aws:ResourceTag/${k}`, v])),
      };
    });
  }

  createScheduleGroup(name: string): void {
    this.scheduler.createGroup(name);
  }

  injectFault(rule: FaultRule): void {
    this.faults.push({ rule, seen: 0 });
  }

  // -------------------------------------------------------------------------------------------------
  // Boxes, shell, EIP proxies
  // -------------------------------------------------------------------------------------------------

  private async runScript(instanceId: string, commands: readonly string[]): Promise<ShellResult> {
    const server = this.boxes.server(instanceId);
    const address = this.ec2.addressOf(instanceId);
    const instance = this.ec2.instances.get(instanceId);
    const publicIp = address?.publicIp ?? instance?.autoPublicIp;
    const profile = instance?.iamInstanceProfile?.Arn;
    const env: Record<string, string> = {
      SANDBOX_INSTANCE_ID: instanceId,
      SANDBOX_ACCOUNT_ID: this.accountId,
      SANDBOX_CA_DIR: this.ca.dir,
      SANDBOX_CA_FILE: this.ca.certPath,
      // A box without a route to S3 (no NAT, no public IP, no gateway endpoint) cannot use a presigned
      // URL; port 1 refuses the connection as an unreachable endpoint would fail it.
      SANDBOX_S3_ENDPOINT:
        instance && this.ec2.reaches(instance, 's3') ? this.s3Endpoint : 'http://127.0.0.1:1',
      ...(profile && this.dns01Profiles.has(profile) ? { SANDBOX_ROUTE53_ALLOWED: '1' } : {}),
      ...this.boxes.cloudInitWait(instanceId),
      ...(address ? { SANDBOX_EIP_HERE: '1' } : {}),
      ...(publicIp ? { SANDBOX_PUBLIC_IP: publicIp } : {}),
      ...(server
        ? { SANDBOX_HTTP_PORT: String(server.httpPort), SANDBOX_HTTPS_PORT: String(server.httpsPort) }
        : {}),
    };
    this.boxes.beforeScript(instanceId);
    try {
      return await this.runtime.runShellScript(this.clock, {
        instanceDir: this.boxes.dirOf(instanceId),
        commands,
        env,
      });
    } finally {
      this.boxes.afterScript(instanceId);
    }
  }

  private repointProxy(allocationId: string): void {
    const proxy = this.proxies.get(allocationId);
    if (!proxy) return;
    const instanceId = this.ec2.addresses.get(allocationId)?.instanceId;
    proxy.pointAt(instanceId ? this.boxes.server(instanceId) : undefined);
  }

  private repointProxies(instanceId: string): void {
    const address = this.ec2.addressOf(instanceId);
    if (address) this.repointProxy(address.allocationId);
  }

  private async startProxy(allocationId: string, publicIp: string): Promise<AddressProxyHandle> {
    const proxy = await this.runtime.startAddressProxy(this.clock, publicIp);
    this.unroutes.push(this.runtime.routeAddress(this.clock, proxy));
    this.proxies.set(allocationId, proxy);
    this.repointProxy(allocationId);
    return proxy;
  }

  // -------------------------------------------------------------------------------------------------
  // Seeding and harness helpers
  // -------------------------------------------------------------------------------------------------

  registerImage(
    behaviour: ImageBehaviour,
    options?: {
      architecture?: 'x86_64' | 'arm64';
      name?: string;
      rootDeviceName?: string;
      tags?: Readonly<Record<string, string>>;
    },
  ): string {
    return this.ec2.registerImage(behaviour, options);
  }

  createBucket(name: string): void {
    this.s3.createBucket(name);
  }

  createTable(name: string, hashKey: string): void {
    this.dynamodb.createTable(name, hashKey);
  }

  async seedTarget(options: SeedTargetOptions): Promise<SeededTarget> {
    this.network ??= this.ec2.seedNetwork();
    const { subnets, securityGroupId } = this.network;
    const subnetId = subnets[options.egress ?? 'nat'];
    const instanceType = options.instanceType ?? 't3.small';
    const oldImageId = this.ec2.registerImage(options.oldImage ?? { cloudInit: 'done', app: 'healthy' }, {
      architecture: ARM_TYPES.test(instanceType) ? 'arm64' : 'x86_64',
      name: `${options.name}-2025-01-01`,
    });
    const userData = [
      '#cloud-config',
      `fqdn: ${options.domain}`,
      'runcmd:',
      '  - systemctl enable --now nginx',
      '',
    ].join('\n');
    const instance = this.ec2.seedInstance(
      {
        ImageId: oldImageId,
        InstanceType: instanceType as _InstanceType,
        MinCount: 1,
        MaxCount: 1,
        SubnetId: subnetId,
        SecurityGroupIds: [securityGroupId],
        ClientToken: `terraform-${options.name}`,
        UserData: Buffer.from(userData).toString('base64'),
        IamInstanceProfile: { Arn: `arn:aws:iam::${this.accountId}:instance-profile/${options.name}-web` },
        MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 2 },
        TagSpecifications: [
          { ResourceType: 'instance', Tags: [{ Key: 'Name', Value: options.name }] },
          { ResourceType: 'volume', Tags: [{ Key: 'Name', Value: options.name }] },
        ],
        BlockDeviceMappings: [
          {
            DeviceName: '/dev/xvda',
            Ebs: { VolumeSize: 20, VolumeType: 'gp3', Encrypted: true, DeleteOnTermination: true },
          },
          ...(options.dataVolume
            ? [
                {
                  DeviceName: '/dev/sdf',
                  Ebs: {
                    VolumeSize: 50,
                    VolumeType: 'gp3' as const,
                    Encrypted: true,
                    DeleteOnTermination: false,
                  },
                },
              ]
            : []),
        ],
      },
      { serving: true },
    );
    await this.powering.get(instance.instanceId);
    if (instance.iamInstanceProfile) this.seededProfiles.set(options.name, instance.iamInstanceProfile.Arn);
    // Real work (openssl, listening sockets): tracked, so virtual time cannot pass during the seeding.
    if (options.certificate !== false) {
      await this.clock.track(
        this.boxes.seedCertbotLineage(
          instance.instanceId,
          options.domain,
          this.ca,
          options.certificate?.validDays ?? 90,
        ),
      );
    }
    const address = this.ec2.allocateAddress();
    address.tags.set('Name', options.name);
    // Seeded as if done long ago: through the model, not the API (no call record, no fault).
    this.ec2.actions.AssociateAddress({
      AllocationId: address.allocationId,
      InstanceId: instance.instanceId,
    });
    await this.clock.track(this.startProxy(address.allocationId, address.publicIp));
    return {
      allocationId: address.allocationId,
      publicIp: address.publicIp,
      oldInstanceId: instance.instanceId,
      oldImageId,
      subnetId,
    };
  }

  registerTaskToken(token: string): Promise<unknown> {
    return this.sfn.registerTaskToken(token);
  }
  closeTaskToken(token: string): void {
    this.sfn.closeTaskToken(token);
  }
  lastHeartbeat(token: string): number | undefined {
    return this.sfn.lastHeartbeat(token);
  }

  registerStateMachine(registration: StateMachineRegistration): string {
    return this.sfn.registerStateMachine(registration);
  }

  putStack(name: string, outputs: Readonly<Record<string, string>>): void {
    this.cloudformation.putStack(name, outputs);
  }

  addRule(busName: string, pattern: Record<string, unknown>, target: RuleTarget): void {
    this.events.addRule(busName, pattern, target);
  }

  eipInstance(allocationId: string): string | undefined {
    return this.ec2.addresses.get(allocationId)?.instanceId;
  }

  allowDns01(profileOrTarget: string): void {
    const profile = profileOrTarget.startsWith('arn:')
      ? profileOrTarget
      : this.seededProfiles.get(profileOrTarget);
    if (!profile) {
      throw new Error(
        `Understudy sandbox: allowDns01 needs an instance profile ARN or a seeded target's name, got ${profileOrTarget}`,
      );
    }
    this.dns01Profiles.add(profile);
  }

  objectKeys(bucket: string): string[] {
    return this.s3.keys(bucket);
  }

  instanceDir(instanceId: string): string {
    return this.boxes.dirOf(instanceId);
  }

  async servedCertificate(publicIp: string, domain: string): Promise<ServedCertificate | undefined> {
    const proxy = [...this.proxies.values()].find((p) => p.publicIp === publicIp);
    if (!proxy) return undefined;
    const handshake = new Promise<ServedCertificate | undefined>((resolve) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: proxy.httpsPort,
        servername: domain,
        ca: [this.ca.certPem],
      });
      const done = (value: ServedCertificate | undefined) => {
        socket.destroy();
        resolve(value);
      };
      socket.once('secureConnect', () => {
        const peer = socket.getPeerX509Certificate();
        done(
          peer && {
            serialNumber: peer.serialNumber,
            fingerprint256: peer.fingerprint256,
            validTo: Date.parse(peer.validTo),
            subjectAltName: peer.subjectAltName ?? '',
          },
        );
      });
      socket.once('error', () => done(undefined));
    });
    return this.clock.track(handshake);
  }

  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (currentSandbox() === this) setCurrentSandbox(undefined);
    await this.boxes.closeAll();
    await Promise.allSettled([...this.proxies.values()].map((p) => p.close()));
    this.proxies.clear();
    await this.endpoint?.close();
    for (const undo of this.unroutes.splice(0)) undo();
    if (this.ownsClock) this.clock.uninstall();
    rmSync(this.rootDir, { recursive: true, force: true });
    // EventBridge would retry a failing target and then drop the event; a run that only "worked" because
    // its signal function failed on every event must not pass for a good one.
    const failures = [...this.backgroundErrors, ...this.events.targetErrors.map((entry) => entry.error)];
    if (failures.length > 0) {
      const first =
        failures[0] instanceof Error ? `${failures[0].name}: ${failures[0].message}` : String(failures[0]);
      throw new AggregateError(
        failures,
        `Understudy sandbox: ${failures.length} background task(s) or event target(s) failed; the first: ${first}`,
      );
    }
  }
}
