import { startS3Endpoint } from './aws/s3-http';
import { Sandbox, useDefaultRuntime } from './aws/sandbox';
import { installClock } from './clock';
import { routeAddress, startAddressProxy, startInstanceServer } from './net';
import { runShellScript } from './shell';
import { createCa } from './tls';

/**
 * The embedded sandbox (design §5): a simulated AWS account behind the real SDK clients, running on
 * the virtual clock with real sockets and a real shell. Importing this module wires the runtime;
 * `Sandbox.start()` registers the client plugin and makes the new sandbox the current one.
 *
 * @example
 * const sandbox = await Sandbox.start();
 * const target = await sandbox.seedTarget({ name: 'web', domain: 'web.example.test' });
 * // ... drive handlers or the workflow with clients() from lambdas/shared/clients.ts ...
 * await sandbox.stop();
 */
useDefaultRuntime({
  installClock,
  startInstanceServer,
  startAddressProxy,
  routeAddress,
  createCa,
  runShellScript,
  startS3Endpoint,
});

export { BoxTiming } from './aws/boxes';
export { DynamoTiming } from './aws/dynamodb';
export { Ec2Timing } from './aws/ec2';
export type { SandboxRuntime } from './aws/runtime';
export type { SandboxOptions } from './aws/sandbox';
export { SsmTiming } from './aws/ssm';
export type * from './contracts';
export { Sandbox };
