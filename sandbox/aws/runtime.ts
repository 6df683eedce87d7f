import type { installClock } from '../clock';
import type { routeAddress, startAddressProxy, startInstanceServer } from '../net';
import type { runShellScript } from '../shell';
import type { createCa } from '../tls';
import type { startS3Endpoint } from './s3-http';

/**
 * The parts of the sandbox that touch the machine (timers, sockets, bash), as the AWS models see them.
 * sandbox/index.ts wires the real ones; a test may pass stand-ins with the same signatures so the models
 * can be exercised without opening ports or spawning shells.
 */
export interface SandboxRuntime {
  readonly installClock: typeof installClock;
  readonly startInstanceServer: typeof startInstanceServer;
  readonly startAddressProxy: typeof startAddressProxy;
  readonly routeAddress: typeof routeAddress;
  readonly createCa: typeof createCa;
  readonly runShellScript: typeof runShellScript;
  /** S3's HTTP face for presigned URLs (boxes' curl reaches it). */
  readonly startS3Endpoint: typeof startS3Endpoint;
}
