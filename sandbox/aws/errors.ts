import { randomUUID } from 'node:crypto';
import * as cloudformation from '@aws-sdk/client-cloudformation';
import * as dynamodb from '@aws-sdk/client-dynamodb';
import * as ec2 from '@aws-sdk/client-ec2';
import * as events from '@aws-sdk/client-eventbridge';
import * as s3 from '@aws-sdk/client-s3';
import * as scheduler from '@aws-sdk/client-scheduler';
import * as sfn from '@aws-sdk/client-sfn';
import * as sns from '@aws-sdk/client-sns';
import * as ssm from '@aws-sdk/client-ssm';
import type { ServiceName } from '../../lambdas/shared/clients';

/**
 * Errors shaped exactly as the SDK would throw them after deserializing AWS's answer: the modeled
 * exception class when the client exports one (so `instanceof ParameterNotFound` works), otherwise the
 * service's base exception with the AWS error code as `name` (EC2 models no exceptions at all).
 */

type ExceptionCtor = new (options: {
  name: string;
  message: string;
  $fault: 'client' | 'server';
  $metadata: Record<string, unknown>;
}) => Error;
interface ServiceErrors {
  readonly base: ExceptionCtor;
  readonly exports: Readonly<Record<string, unknown>>;
}

const services: Record<ServiceName, ServiceErrors> = {
  ec2: { base: ec2.EC2ServiceException as unknown as ExceptionCtor, exports: ec2 },
  ssm: { base: ssm.SSMServiceException as unknown as ExceptionCtor, exports: ssm },
  s3: { base: s3.S3ServiceException as unknown as ExceptionCtor, exports: s3 },
  sns: { base: sns.SNSServiceException as unknown as ExceptionCtor, exports: sns },
  sfn: { base: sfn.SFNServiceException as unknown as ExceptionCtor, exports: sfn },
  events: { base: events.EventBridgeServiceException as unknown as ExceptionCtor, exports: events },
  dynamodb: { base: dynamodb.DynamoDBServiceException as unknown as ExceptionCtor, exports: dynamodb },
  cloudformation: {
    base: cloudformation.CloudFormationServiceException as unknown as ExceptionCtor,
    exports: cloudformation,
  },
  scheduler: { base: scheduler.SchedulerServiceException as unknown as ExceptionCtor, exports: scheduler },
};

const SERVER_CODES =
  /^(InternalError|InternalFailure|InternalServerError|InternalException|ServiceUnavailable|Unavailable|RequestLimitExceeded|SlowDown)/;

const defaultStatus = (code: string): number => {
  if (code === 'RequestLimitExceeded' || code === 'ServiceUnavailable' || code === 'SlowDown') return 503;
  if (SERVER_CODES.test(code)) return 500;
  if (code === 'ThrottlingException' || code === 'Throttling' || code === 'TooManyRequestsException')
    return 400;
  if (code === 'PreconditionFailed') return 412;
  if (code.endsWith('NotFound') || code === 'NoSuchKey' || code === 'NotFound') return 404;
  return 400;
};

export interface AwsErrorLike extends Error {
  readonly $fault: 'client' | 'server';
  readonly $metadata: { readonly httpStatusCode: number };
}

export const awsError = (
  service: ServiceName,
  code: string,
  message: string,
  httpStatus?: number,
): AwsErrorLike => {
  const status = httpStatus ?? defaultStatus(code);
  const $fault: 'client' | 'server' = status >= 500 ? 'server' : 'client';
  const $metadata = {
    httpStatusCode: status,
    requestId: randomUUID(),
    attempts: 1,
    totalRetryDelay: 0,
  };
  const { base, exports } = services[service];
  const modeled = exports[code];
  let error: Error;
  if (typeof modeled === 'function' && (modeled as { prototype: unknown }).prototype instanceof base) {
    error = new (modeled as ExceptionCtor)({ name: code, message, $fault, $metadata });
  } else {
    error = new base({ name: code, message, $fault, $metadata });
    // The query protocol's deserializer copies the XML <Code> onto the exception as well.
    if (service === 'ec2') Object.assign(error, { Code: code });
  }
  if (code === 'ThrottlingException' || code === 'RequestLimitExceeded' || code === 'Throttling') {
    Object.assign(error, { $retryable: { throttling: true } });
  }
  return error as AwsErrorLike;
};

/** Shorthands per service, so model code reads like AWS's error documentation. */
export const errorsFor =
  (service: ServiceName) =>
  (code: string, message: string, httpStatus?: number): AwsErrorLike =>
    awsError(service, code, message, httpStatus);
