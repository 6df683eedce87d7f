import { DescribeInstancesCommand } from '@aws-sdk/client-ec2';
import type { BuildHandlerArguments, BuildMiddleware } from '@smithy/types';
import type { Segment, Subsegment } from 'aws-xray-sdk-core';
import { z } from 'zod';
import { lambdaContext } from '../fixtures/aws';

/**
 * Tracing as it runs inside Lambda: the tracer is on (AWS_EXECUTION_ENV), a segment is current, and the
 * modules are loaded fresh so that the tracer reads this environment, not the suite's (which turns it
 * off). Calls are answered in-process, after X-Ray's middleware has seen them: nothing leaves the machine.
 */
type Modules = {
  clients: typeof import('../../lambdas/shared/clients');
  handler: typeof import('../../lambdas/shared/handler');
  logger: typeof import('../../lambdas/shared/logger');
  xray: typeof import('aws-xray-sdk-core');
};

const LAMBDA_ENV = {
  AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
  POWERTOOLS_TRACE_ENABLED: 'true',
  // Patching Node's http/https would outlive this file in the worker; SDK clients are traced without it.
  POWERTOOLS_TRACER_CAPTURE_HTTPS_REQUESTS: 'false',
  _HANDLER: 'index.handler',
  // Lambda hands its role's credentials over in the environment; signing needs some, nothing checks them.
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
  AWS_SECRET_ACCESS_KEY: 'example',
};
const saved = { ...process.env };
let m: Modules;
/** The trace header each answered call carried. */
const traceHeaders: string[] = [];

const answerInProcess: BuildMiddleware<object, object> =
  () => async (args: BuildHandlerArguments<object>) => {
    const request = args.request as { headers: Record<string, string> };
    traceHeaders.push(request.headers['X-Amzn-Trace-Id'] ?? '');
    return {
      output: { Reservations: [], $metadata: { httpStatusCode: 200, requestId: 'req-1', attempts: 1 } },
      response: {},
    };
  };

beforeAll(() => {
  Object.assign(process.env, LAMBDA_ENV);
  jest.isolateModules(() => {
    m = {
      clients: require('../../lambdas/shared/clients'),
      handler: require('../../lambdas/shared/handler'),
      logger: require('../../lambdas/shared/logger'),
      xray: require('aws-xray-sdk-core'),
    };
  });
  m.clients.addClientPlugin((client) => {
    // Innermost in the build step (X-Ray's middleware is at normal priority), so X-Ray wraps the answer.
    (client.middlewareStack as unknown as { add: (mw: unknown, o: object) => void }).add(answerInProcess, {
      step: 'build',
      priority: 'low',
      name: 'answerInProcess',
    });
  });
});

afterAll(() => {
  process.env = saved;
});

beforeEach(() => {
  traceHeaders.length = 0;
});

/** Runs `body` with `segment` as the current X-Ray segment, as Lambda's runtime provides one. */
const within = <T>(segment: Segment, body: () => Promise<T>): Promise<T> =>
  m.xray.getNamespace().runPromise(() => {
    m.xray.setSegment(segment);
    return body();
  });

const subsegmentsOf = (s: Segment | Subsegment): Subsegment[] => s.subsegments ?? [];
/** A subsegment as X-Ray receives it (the SDK's types do not declare the recorded fields). */
const sent = (s: Subsegment | undefined): Record<string, unknown> => JSON.parse(s?.toString() ?? '{}');

describe('tracing', () => {
  test("a factory client's call is recorded as a subsegment named after the service, carrying the trace id", async () => {
    const segment = new m.xray.Segment('understudy-test');
    await within(segment, () => m.clients.ec2Client().send(new DescribeInstancesCommand({})));

    const [call] = subsegmentsOf(segment);
    expect(call?.name).toBe('EC2');
    expect(call?.namespace).toBe('aws');
    expect(sent(call)).toMatchObject({
      aws: { operation: 'DescribeInstances', request_id: 'req-1' },
      http: { response: { status: 200 } },
    });
    expect(traceHeaders).toHaveLength(1);
    expect(traceHeaders[0]).toContain(`Root=${segment.trace_id}`);
    expect(traceHeaders[0]).toContain(`Parent=${call?.id}`);
  });

  test('a step runs in its own handler subsegment, annotated with the correlation ids, its response never recorded', async () => {
    const handler = m.handler.step(z.object({ target: z.string() }), async (input) => {
      m.logger.correlate({ target: input.target, execution: 'exec-1', instance: undefined });
      await m.clients.ec2Client().send(new DescribeInstancesCommand({}));
      return { taskToken: 'token-that-must-stay-out-of-traces' };
    });
    const segment = new m.xray.Segment('understudy-test');

    const result = await within(segment, () => handler({ target: 'web' }, lambdaContext()));

    expect(result.taskToken).toBe('token-that-must-stay-out-of-traces');
    const [invocation] = subsegmentsOf(segment);
    expect(invocation?.name).toBe('## index.handler');
    expect(sent(invocation).annotations).toEqual({
      ColdStart: expect.any(Boolean),
      Service: 'understudy',
      target: 'web',
      execution: 'exec-1',
    });
    expect(subsegmentsOf(invocation as Subsegment).map((s) => s.name)).toEqual(['EC2']);
    expect(JSON.stringify(segment)).not.toContain('token-that-must-stay-out-of-traces');
  });

  test("a failing step's error is recorded on its subsegment", async () => {
    const handler = m.handler.step(z.object({ target: z.string() }), async () => {
      throw new Error('the EIP moved');
    });
    const segment = new m.xray.Segment('understudy-test');

    await expect(within(segment, () => handler({ target: 'web' }, lambdaContext()))).rejects.toThrow(
      'the EIP moved',
    );

    const [invocation] = subsegmentsOf(segment);
    expect(invocation?.name).toBe('## index.handler');
    expect(sent(invocation).fault).toBe(true);
    expect(JSON.stringify(invocation)).toContain('the EIP moved');
  });
});
