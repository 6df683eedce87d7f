import type {
  AddressProxyHandle,
  AppResponder,
  InstanceServerHandle,
  SandboxCa,
  ShellResult,
  ShellRun,
  VirtualClock,
} from '../contracts';

/**
 * The parts of the sandbox that touch the machine (timers, sockets, bash), as the AWS models see them.
 * sandbox/index.ts wires the real ones; model tests pass stand-ins so the models can be exercised without
 * opening ports or spawning shells.
 */
export interface SandboxRuntime {
  installClock(): VirtualClock;
  startInstanceServer(clock: VirtualClock, responder?: AppResponder): Promise<InstanceServerHandle>;
  startAddressProxy(clock: VirtualClock, publicIp: string): Promise<AddressProxyHandle>;
  /** Sends connections for the proxy's public IP to the proxy; may return a function that undoes it. */
  routeAddress(proxy: AddressProxyHandle): unknown;
  /** The CA; `certPath`/`keyPath` (when the runtime writes them) are handed to certbot's stand-in. */
  createCa(dir: string): Promise<SandboxCa & { readonly certPath?: string; readonly keyPath?: string }>;
  runShellScript(clock: VirtualClock, run: ShellRun): Promise<ShellResult>;
}
