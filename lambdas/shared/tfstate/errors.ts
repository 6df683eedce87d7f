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

export const tfStateError = (reason: TfStateRefusal, message: string, options?: ErrorOptions) =>
  new TfStateError(reason, message, options);
