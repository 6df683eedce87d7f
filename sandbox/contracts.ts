/**
 * Contracts between the sandbox's parts: the runtime (virtual clock, real sockets, shell) and the
 * simulated AWS services, and between the sandbox and the workflow harness / demo that drive it.
 * Types only: implementations live next to this file.
 */

import type { ServiceName } from '../lambdas/shared/clients';

// ---------------------------------------------------------------------------------------------------
// Runtime: sandbox/clock.ts
// ---------------------------------------------------------------------------------------------------

/**
 * One injected clock for timers and Date. It advances (jumping to the next due timer) only when no
 * sandbox work is in flight: SDK commands being modelled, HTTP requests being served, shell scripts
 * running. So a real socket round trip never "takes" virtual time it did not have.
 */
export interface VirtualClock {
  /** Virtual epoch milliseconds; `Date.now()` returns the same while the clock is installed. */
  now(): number;
  /** Virtual milliseconds since the clock was installed. */
  elapsed(): number;
  /** Marks `work` as in flight until it settles; returns it. */
  track<T>(work: Promise<T>): Promise<T>;
  /** Marks something in flight (a socket, a child process) until the returned release is called. */
  hold(label: string): () => void;
  /** Resolves after `ms` virtual milliseconds. */
  sleep(ms: number): Promise<void>;
  /** Restores the real timers and Date. */
  uninstall(): void;
}

// ---------------------------------------------------------------------------------------------------
// Runtime: sandbox/net.ts and sandbox/tls.ts
// ---------------------------------------------------------------------------------------------------

export interface AppRequest {
  readonly method: string;
  readonly path: string;
  readonly host: string | undefined;
  readonly tls: boolean;
}
export interface AppResponse {
  readonly status: number;
  readonly body: string;
}
/** Decides each answer of a simulated box's web app; may look at the clock to fail "after a while". */
export type AppResponder = (request: AppRequest) => AppResponse;

/** A simulated box's web server: real HTTP (and HTTPS once a certificate is installed) on loopback. */
export interface InstanceServerHandle {
  readonly httpPort: number;
  readonly httpsPort: number;
  setResponder(responder: AppResponder | undefined): void;
  /** Serve this certificate for `domain` over HTTPS (PEM strings). */
  installCertificate(domain: string, certPem: string, keyPem: string): void;
  close(): Promise<void>;
}

/** The Elastic IP: a TCP proxy for ports 80 and 443 whose backend flips on AssociateAddress. */
export interface AddressProxyHandle {
  readonly publicIp: string;
  readonly httpPort: number;
  readonly httpsPort: number;
  pointAt(server: InstanceServerHandle | undefined): void;
  close(): Promise<void>;
}

/** A certificate authority made at run time; instances serve leaf certificates it issues. */
export interface SandboxCa {
  readonly certPem: string;
  issue(domain: string, validDays?: number): Promise<{ certPem: string; keyPem: string }>;
}
/** The CA plus where it lives on disk: certbot's stand-in signs with it too. */
export interface SandboxCaFiles extends SandboxCa {
  /** Holds ca.crt, ca.key and the `openssl ca` database. */
  readonly dir: string;
  readonly certPath: string;
  readonly keyPath: string;
}

// ---------------------------------------------------------------------------------------------------
// Runtime: sandbox/shell.ts (SSM Run Command executes the exact script it was sent)
// ---------------------------------------------------------------------------------------------------

export interface ShellRun {
  /** Per-instance root directory (holds etc/, var/, the stand-in bin/). */
  readonly instanceDir: string;
  /** AWS-RunShellScript `commands`, joined with newlines, run by bash. */
  readonly commands: readonly string[];
  /** Extra environment (e.g. whether the EIP points at this box, where the CA lives). */
  readonly env: Readonly<Record<string, string>>;
}
export interface ShellResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Virtual duration the script declared through its stand-ins (certbot ~20 s, ...). */
  readonly virtualMs: number;
}

// ---------------------------------------------------------------------------------------------------
// Simulated AWS: sandbox/index.ts (Sandbox) and sandbox/aws/*
// ---------------------------------------------------------------------------------------------------

/** How a simulated AMI behaves when booted. */
export interface ImageBehaviour {
  /** cloud-init's outcome: exit 0, exit 1 (errors), exit 2 (recoverable errors), or never finishing. */
  readonly cloudInit: 'done' | 'error' | 'recoverable' | 'hang';
  /** Virtual ms from `running` to cloud-init's end (default 60 000). */
  readonly bootMs?: number;
  /** The web app once cloud-init is done. */
  readonly app: 'healthy' | 'broken' | { readonly healthyForMs: number };
  /** Does the image ship the readiness agent (default true)? */
  readonly agent?: boolean;
}

export interface CallRecord {
  readonly seq: number;
  /** Virtual ms since the sandbox started. */
  readonly at: number;
  readonly service: ServiceName;
  /** SDK command name without the `Command` suffix, e.g. `RunInstances`. */
  readonly action: string;
  readonly input: unknown;
  /** True for calls that change the account (everything but Describe/Get/List/Head and DryRun). */
  readonly mutating: boolean;
  /** Error name when the call failed. */
  readonly error?: string;
  /** Set when the call came over HTTP with a presigned URL (a box's curl) rather than from an SDK client. */
  readonly via?: 'presigned-url' | 'scheduler';
}

export interface FaultRule {
  readonly service: CallRecord['service'];
  readonly action: string;
  /** Which matching calls fail: the nth (1-based) only, or every one. */
  readonly nth?: number;
  /** What happens: an AWS error by name (ThrottlingException, InternalError...), or hang forever. */
  readonly fault:
    | { readonly error: string; readonly message?: string; readonly httpStatus?: number }
    | 'hang';
}

export interface PublishedMessage {
  readonly at: number;
  readonly topicArn: string;
  readonly subject?: string;
  readonly message: string;
  readonly attributes: Readonly<Record<string, string>>;
}

/** Seeds a ready-to-replace service: a VPC, subnet, AMIs, a running box with its app, an EIP on it. */
export interface SeedTargetOptions {
  readonly name: string;
  readonly domain: string;
  /** Subnet egress: `nat` (private subnet with a NAT route), `igw` (public), `none`. Default `nat`. */
  readonly egress?: 'nat' | 'igw' | 'none';
  readonly oldImage?: ImageBehaviour;
  readonly instanceType?: string;
  /** Extra EBS volume on the old box (preflight must refuse it unless dataVolumes is fresh). */
  readonly dataVolume?: boolean;
  /**
   * The old box's certbot lineage for `domain` (live/, archive/, renewal/ under /etc/letsencrypt, from
   * the sandbox CA), served over HTTPS. Default: valid 90 days from a day ago. `false`: plain HTTP only.
   */
  readonly certificate?: false | { readonly validDays?: number };
}

/** The certificate a TLS client is served through an address, as the harness reads it. */
export interface ServedCertificate {
  /** Hex, as `openssl x509 -serial` and X509Certificate print it. */
  readonly serialNumber: string;
  readonly fingerprint256: string;
  /** Epoch ms of notAfter. */
  readonly validTo: number;
  readonly subjectAltName: string;
}
export interface SeededTarget {
  readonly allocationId: string;
  readonly publicIp: string;
  readonly oldInstanceId: string;
  readonly oldImageId: string;
  readonly subnetId: string;
}

/**
 * What the local engine reports while it runs a state machine (aws-local-stepfunctions' event log),
 * reduced to the members the history is made from.
 */
export interface EngineEvent {
  readonly type: string;
  readonly timestamp: number;
  readonly state?: {
    readonly name: string;
    readonly type: string;
    readonly input?: unknown;
    readonly output?: unknown;
  };
  readonly input?: unknown;
  readonly output?: unknown;
  readonly Error?: string;
  readonly Cause?: unknown;
}

export interface EngineResult {
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
}

/** How the sandbox runs one execution of a registered state machine (a LocalWorkflow's `run`). */
export type ExecutionRunner = (
  input: unknown,
  options: {
    readonly name: string;
    readonly onEvent: (event: EngineEvent) => void;
    /** Aborted by StopExecution: the runner starts no further state. */
    readonly signal: AbortSignal;
  },
) => Promise<EngineResult>;

export interface StateMachineRegistration {
  readonly name: string;
  /** The deployed definition (ASL), read for each Task's Resource. */
  readonly definition: unknown;
  readonly run: ExecutionRunner;
}

/** What a workflow harness needs from the sandbox; implemented by sandbox/index.ts. */
export interface SandboxApi {
  readonly clock: VirtualClock;
  readonly region: string;
  readonly accountId: string;
  readonly calls: readonly CallRecord[];
  readonly messages: readonly PublishedMessage[];
  seedTarget(options: SeedTargetOptions): Promise<SeededTarget>;
  registerImage(
    behaviour: ImageBehaviour,
    options?: { architecture?: 'x86_64' | 'arm64'; name?: string },
  ): string;
  /** Route the account's Step Functions callbacks: tokens minted by the harness resolve/reject here. */
  registerTaskToken(token: string): Promise<unknown>;
  /** The task is over (timed out, failed, cancelled): later callbacks with the token get TaskTimedOut. */
  closeTaskToken(token: string): void;
  /** Virtual epoch ms of the token's last SendTaskHeartbeat, if any. */
  lastHeartbeat(token: string): number | undefined;
  /** A bucket the account owns (S3 answers NoSuchBucket for any other). */
  createBucket(name: string): void;
  /** An EventBridge Scheduler schedule group, as the stack's `AWS::Scheduler::ScheduleGroup` leaves it. */
  createScheduleGroup(name: string): void;
  /** A DynamoDB table keyed by `hashKey` (a string), such as Terraform's lock table keyed by `LockID`. */
  createTable(name: string, hashKey: string): void;
  /**
   * Deploys a state machine whose executions `registration.run` carries out (a LocalWorkflow's run):
   * StartExecution, DescribeExecution, ListExecutions and GetExecutionHistory then answer for it.
   * Returns its ARN.
   */
  registerStateMachine(registration: StateMachineRegistration): string;
  /** A CloudFormation stack with these outputs, as `cdk deploy` leaves it (DescribeStacks answers it). */
  putStack(name: string, outputs: Readonly<Record<string, string>>): void;
  /** EventBridge rules on the Understudy bus: events matching `pattern` go to `target`. */
  addRule(
    busName: string,
    pattern: Record<string, unknown>,
    target: (event: unknown) => Promise<unknown>,
  ): void;
  injectFault(rule: FaultRule): void;
  /** Where the EIP points now (instance id) per DescribeAddresses. */
  eipInstance(allocationId: string): string | undefined;
  /**
   * Where presigned S3 URLs are answered (`http://127.0.0.1:<port>`): boxes' scripts get it as
   * SANDBOX_S3_ENDPOINT and their curl sends S3 URLs there. Requests that reach the S3 model this way
   * appear in `calls` with `via: 'presigned-url'`.
   */
  readonly s3Endpoint: string;
  /**
   * Lets boxes with this instance profile (an ARN, or a seeded target's name for its profile) answer
   * dns-01 challenges through Route 53: their scripts get SANDBOX_ROUTE53_ALLOWED=1.
   */
  allowDns01(profileOrTarget: string): void;
  /** The keys in one of the account's buckets, sorted, for assertions (no call record). */
  objectKeys(bucket: string): string[];
  /** A box's root directory (its etc/letsencrypt, var/log...), for assertions. */
  instanceDir(instanceId: string): string;
  /**
   * The certificate served for `domain` over HTTPS through the address (verified against the sandbox
   * CA); undefined when no handshake succeeds.
   */
  servedCertificate(publicIp: string, domain: string): Promise<ServedCertificate | undefined>;
  /**
   * Releases everything; then rejects with an AggregateError if any background work or event target
   * (the signal function) failed meanwhile, so such failures cannot pass unnoticed.
   */
  stop(): Promise<void>;
}
