import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { SchedulerClient } from '@aws-sdk/client-scheduler';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { tracer } from './tracer';

/**
 * The one place AWS SDK clients are built. Domain code never constructs a client: it takes one as a
 * parameter, and handlers get theirs from here (only those their step calls).
 *
 * Every client is traced (an X-Ray subsegment per call, named after the service) when the tracer is on,
 * which it is only inside Lambda.
 *
 * Plugins (a simulated account) are kept on `globalThis` under a registered symbol rather than in this
 * module, because every Lambda bundle carries its own copy of this file and a plugin must reach all of
 * them in one process.
 */

export interface PluggableClient {
  readonly middlewareStack: { add: (...args: never[]) => unknown };
  readonly config: object;
}
export type ClientPlugin = (client: PluggableClient, service: ServiceName) => void;
export type ServiceName =
  | 'ec2'
  | 'ssm'
  | 's3'
  | 'sns'
  | 'sfn'
  | 'events'
  | 'dynamodb'
  | 'cloudformation'
  | 'scheduler';

const PLUGINS = Symbol.for('understudy.aws-client-plugins');
const BUILT = Symbol.for('understudy.aws-clients-built');
type PluginHost = { [PLUGINS]?: ClientPlugin[]; [BUILT]?: number };

const plugins = (): ClientPlugin[] => {
  const host = globalThis as PluginHost;
  host[PLUGINS] ??= [];
  return host[PLUGINS];
};

/** Registers a plugin applied to every client built afterwards (idempotent per function object). */
export const addClientPlugin = (plugin: ClientPlugin): void => {
  const list = plugins();
  if (!list.includes(plugin)) list.push(plugin);
};

/**
 * Clients built so far in this process, by every copy of this module: a plugin registered later does
 * not reach them, which a simulated account must know.
 */
export const builtClientCount = (): number => (globalThis as PluginHost)[BUILT] ?? 0;

const build = <C extends PluggableClient>(service: ServiceName, make: () => C): C => {
  const client = tracer.captureAWSv3Client(make());
  for (const plugin of plugins()) plugin(client, service);
  const host = globalThis as PluginHost;
  host[BUILT] = (host[BUILT] ?? 0) + 1;
  return client;
};

// The SDK's adaptive mode backs off under throttling (RequestLimitExceeded, ThrottlingException)
// instead of failing the step on the first burst.
const common = { maxAttempts: 5, retryMode: 'adaptive' } as const;

/** A process-wide client, built on first use (after any plugin registration). */
const singleton = <C extends PluggableClient>(service: ServiceName, make: () => C): (() => C) => {
  let client: C | undefined;
  return () => {
    client ??= build(service, make);
    return client;
  };
};

// One accessor per service, so a handler references only the clients its step calls and esbuild leaves
// the other SDK clients out of its bundle.
export const ec2Client = /* @__PURE__ */ singleton('ec2', () => new EC2Client(common));
export const ssmClient = /* @__PURE__ */ singleton('ssm', () => new SSMClient(common));
export const s3Client = /* @__PURE__ */ singleton('s3', () => new S3Client(common));
export const snsClient = /* @__PURE__ */ singleton('sns', () => new SNSClient(common));
export const sfnClient = /* @__PURE__ */ singleton('sfn', () => new SFNClient(common));
export const eventsClient = /* @__PURE__ */ singleton('events', () => new EventBridgeClient(common));
export const dynamodbClient = /* @__PURE__ */ singleton('dynamodb', () => new DynamoDBClient(common));
/** Retire schedules the end of a rollback window with it (one-time EventBridge Scheduler schedules). */
export const schedulerClient = /* @__PURE__ */ singleton('scheduler', () => new SchedulerClient(common));
/** The CLI finds the stack's outputs with it; no function calls CloudFormation. */
export const cloudformationClient = /* @__PURE__ */ singleton(
  'cloudformation',
  () => new CloudFormationClient(common),
);

/** Clients for a Terraform backend that lives in another region than the function (a central state bucket). */
const perRegion = <C extends PluggableClient>(service: ServiceName, make: (region: string) => C) => {
  const built = new Map<string, C>();
  return (region: string): C => {
    let client = built.get(region);
    if (!client) {
      client = build(service, () => make(region));
      built.set(region, client);
    }
    return client;
  };
};
export const s3ClientIn = /* @__PURE__ */ perRegion('s3', (region) => new S3Client({ ...common, region }));
export const dynamodbClientIn = /* @__PURE__ */ perRegion(
  'dynamodb',
  (region) => new DynamoDBClient({ ...common, region }),
);

/** S3 and DynamoDB clients for a Terraform backend: the function's region, or the backend's own. */
export const terraformBackendClients = (region: string | undefined) =>
  region
    ? { s3: s3ClientIn(region), dynamodb: dynamodbClientIn(region) }
    : { s3: s3Client(), dynamodb: dynamodbClient() };

/** A fresh set of every client (tests mock them per test). */
export const createClients = () => ({
  ec2: build('ec2', () => new EC2Client(common)),
  ssm: build('ssm', () => new SSMClient(common)),
  s3: build('s3', () => new S3Client(common)),
  sns: build('sns', () => new SNSClient(common)),
  sfn: build('sfn', () => new SFNClient(common)),
  events: build('events', () => new EventBridgeClient(common)),
  dynamodb: build('dynamodb', () => new DynamoDBClient(common)),
});
export type Clients = ReturnType<typeof createClients>;

/** This process's clients, all of them: for tools that use several services (the CLI, the demo). */
export const clients = (): Clients => ({
  ec2: ec2Client(),
  ssm: ssmClient(),
  s3: s3Client(),
  sns: snsClient(),
  sfn: sfnClient(),
  events: eventsClient(),
  dynamodb: dynamodbClient(),
});
