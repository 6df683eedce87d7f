import { TfStateError } from '../../lambdas/shared/tfstate/errors';

/** The TfStateError `fn` throws; any other outcome fails the test. */
export const refusal = (fn: () => unknown): TfStateError => {
  try {
    fn();
  } catch (error) {
    if (error instanceof TfStateError) return error;
    throw error;
  }
  throw new Error('expected a TfStateError');
};
