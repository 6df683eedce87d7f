/**
 * Why a state operation refused. Every refusal happens before anything is written; the CLI prints the
 * message as its one-line reason and exits non-zero, the workflow step turns it into a warning.
 */
export type TfStateRefusal =
  /** Not JSON, not UTF-8, empty, or a format version other than 4. */
  | 'UnsupportedState'
  /** An address that does not parse, or names nothing in the state. */
  | 'InvalidAddress'
  | 'AddressNotFound'
  /** The state's instance is not the one the caller expected (`--expect-instance`). */
  | 'ExpectedInstanceDiffers'
  /** DescribeInstances / DescribeAddresses / DescribeVolumes input that cannot be used. */
  | 'InvalidDescribeOutput'
  /** `mv`: the destination exists, or source and destination are different kinds of thing. */
  | 'DestinationExists'
  | 'KindMismatch'
  /** S3 backend. */
  | 'InvalidBackend'
  | 'StateNotFound'
  | 'LockHeld'
  | 'LockLost'
  | 'DigestMismatch'
  | 'EtagChanged'
  /** A state write failed in a way that leaves unknown whether S3 stored it. */
  | 'WriteUncertain'
  | 'BackupFailed';

export class TfStateError extends Error {
  constructor(
    readonly reason: TfStateRefusal,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'TfStateError';
  }
}

/** What a failed remote update had already done, for the caller's report (a backup, lock warnings). */
export interface RemoteFailureContext {
  readonly backupKey?: string;
  readonly warnings: readonly string[];
}

const CONTEXT = Symbol('understudy.tfstate.remote-context');

/** Attaches the context to whatever was thrown (an SDK error as well as a refusal), then returns it. */
export const withRemoteContext = (error: unknown, context: RemoteFailureContext): unknown => {
  if (typeof error === 'object' && error !== null) {
    Object.defineProperty(error, CONTEXT, { value: context, enumerable: false, configurable: true });
  }
  return error;
};

export const remoteContextOf = (error: unknown): RemoteFailureContext | undefined =>
  typeof error === 'object' && error !== null
    ? (error as { [CONTEXT]?: RemoteFailureContext })[CONTEXT]
    : undefined;

export const tfStateError = (reason: TfStateRefusal, message: string, options?: ErrorOptions) =>
  new TfStateError(reason, message, options);
