import {
  awsCall,
  describeAwsError,
  failAs,
  hasCode,
  isTransient,
  rethrowIfTransient,
} from '../../lambdas/shared/aws-errors';
import { ErrorNames, UnderstudyError } from '../../lambdas/shared/errors';
import { awsError } from '../fixtures/aws';

describe('aws-errors', () => {
  it.each([
    ['ThrottlingException', 400],
    ['RequestLimitExceeded', 503],
    ['InternalError', 500],
    ['ServiceUnavailable', 503],
  ])('treats %s as transient', (name, status) => {
    expect(isTransient(awsError(name, 'x', status))).toBe(true);
  });

  it('treats any 5xx as transient, whatever its code', () => {
    expect(isTransient(awsError('SomethingNew', 'x', 502))).toBe(true);
  });

  it('does not treat client errors or our own errors as transient', () => {
    expect(isTransient(awsError('InvalidInstanceID.NotFound', 'x', 400))).toBe(false);
    expect(isTransient(awsError('UnauthorizedOperation', 'x', 403))).toBe(false);
    expect(isTransient(new UnderstudyError(ErrorNames.Transient, 'already mapped'))).toBe(false);
    expect(isTransient('a string')).toBe(false);
  });

  it('rethrowIfTransient throws Transient keeping the cause, and returns otherwise', () => {
    const throttled = awsError('ThrottlingException', 'Rate exceeded');
    let thrown: unknown;
    try {
      rethrowIfTransient(throttled, 'DescribeInstances');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({
      name: 'Transient',
      message: expect.stringContaining('DescribeInstances: ThrottlingException: Rate exceeded'),
    });
    expect((thrown as Error).cause).toBe(throttled);
    expect(() => rethrowIfTransient(awsError('InvalidParameterValue', 'bad'))).not.toThrow();
  });

  it('awsCall maps known codes and passes unknown client errors through', async () => {
    const notFound = awsError('InvalidAMIID.NotFound', 'gone');
    await expect(
      awsCall(
        'DescribeImages',
        () => Promise.reject(notFound),
        (e) => (hasCode(e, 'InvalidAMIID.NotFound') ? new Error('mapped') : undefined),
      ),
    ).rejects.toThrow('mapped');
    await expect(awsCall('DescribeImages', () => Promise.reject(notFound))).rejects.toBe(notFound);
  });

  it('failAs names whatever escaped, but keeps Understudy errors as they are', async () => {
    await expect(
      Promise.reject(awsError('UnauthorizedOperation', 'no')).catch(
        failAs(ErrorNames.LaunchFailed, 'launch'),
      ),
    ).rejects.toMatchObject({
      name: 'LaunchFailed',
      message: 'launch: UnauthorizedOperation: no',
    });
    const own = new UnderstudyError(ErrorNames.LockLost, 'lost');
    await expect(Promise.reject(own).catch(failAs(ErrorNames.LaunchFailed, 'launch'))).rejects.toBe(own);
  });

  it('describes an error as "Code: message"', () => {
    expect(describeAwsError(awsError('IncorrectInstanceState', 'The instance is not running'))).toBe(
      'IncorrectInstanceState: The instance is not running',
    );
  });
});
