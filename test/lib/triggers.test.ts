import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import {
  ConfigError,
  MaintenanceWindowSchema,
  parseConfig,
  type UnderstudyConfig,
} from '../../lambdas/shared/config';
import { checkMaintenanceWindow, inWindow } from '../../lambdas/shared/window';
import { asList, flatten } from '../../lib/nag-findings';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import { applyInputTransformer, type InputTransformer } from '../../sandbox/aws/events';
import {
  ACCOUNT,
  exampleConfig,
  logicalId,
  REGION,
  REPO,
  statementsOfRole,
  synthesize,
} from './stack-fixture';

/** The example's two targets with every trigger switched on between them. */
const triggeredConfig = (): UnderstudyConfig => {
  const config = exampleConfig();
  const [web, api] = config.targets;
  if (!web || !api) throw new Error('the example config changed: it needs web and api');
  return parseConfig({
    ...config,
    targets: [
      {
        ...web,
        triggers: {
          imageParameter: true,
          schedule: { expression: 'cron(0 4 ? * SUN *)', timezone: 'Europe/Berlin' },
          selfHeal: { impairedMinutes: 15 },
          maintenanceWindows: [
            { days: ['sat', 'sun'], start: '02:00', end: '06:00', timezone: 'Europe/Berlin' },
          ],
        },
      },
      { ...api, triggers: { imageParameter: true, imageBuilder: true } },
    ],
  });
};

let stack: UnderstudyStack;
let template: Template;
type Resource = { Type: string; Properties: Record<string, unknown> };
const resources = (): Record<string, Resource> => template.toJSON().Resources;
const ofType = (type: string) => Object.entries(resources()).filter(([, r]) => r.Type === type);

const ruleOf = (key: string) => {
  const rule = stack.triggers.rules[key];
  if (!rule) throw new Error(`no rule ${key}`);
  return resources()[logicalId(rule)] as Resource;
};
const scheduleOf = (key: string) => {
  const schedule = stack.triggers.schedules[key];
  if (!schedule) throw new Error(`no schedule ${key}`);
  return resources()[stack.resolve(schedule.logicalId) as string] as Resource;
};
type RuleTarget = { Arn: unknown; InputTransformer: InputTransformer; RetryPolicy: unknown };
/** The rule's one target. */
const rule = (key: string): [RuleTarget] => {
  const list = ruleOf(key).Properties.Targets as RuleTarget[];
  expect(list).toHaveLength(1);
  return list as [RuleTarget];
};
const fnArn = () => ({ 'Fn::GetAtt': [logicalId(stack.triggers.function as never), 'Arn'] });

beforeAll(() => {
  ({ stack, template } = synthesize({ config: triggeredConfig() }, true));
});

describe('without a triggers block', () => {
  test('nothing is deployed: no trigger function, no default-bus rule, no schedule', () => {
    const plain = synthesize();
    expect(plain.stack.triggers.function).toBeUndefined();
    const rules = Object.values(plain.template.findResources('AWS::Events::Rule'));
    expect(rules.every((r) => r.Properties.EventBusName !== undefined)).toBe(true);
    expect(plain.template.findResources('AWS::Scheduler::Schedule')).toEqual({});
  });
});

describe('image parameter trigger', () => {
  test("matches a Create or Update of the target's own parameter on the default bus", () => {
    const rule = ruleOf('web/imageParameter');
    expect(rule.Properties.EventBusName).toBeUndefined();
    expect(rule.Properties.EventPattern).toEqual({
      source: ['aws.ssm'],
      'detail-type': ['Parameter Store Change'],
      detail: { name: ['/golden/web/ami'], operation: ['Create', 'Update'] },
    });
  });

  test('a built image is watched at the parameter its pipeline writes', () => {
    const rule = ruleOf('api/imageParameter');
    expect((rule.Properties.EventPattern as { detail: unknown }).detail).toEqual({
      name: ['/understudy/Understudy/images/api'],
      operation: ['Create', 'Update'],
    });
  });

  test('its input transformer hands the function the target, parameter and operation', () => {
    const [target] = rule('web/imageParameter');
    expect(target.Arn).toEqual(fnArn());
    const event = {
      source: 'aws.ssm',
      'detail-type': 'Parameter Store Change',
      resources: [`arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/golden/web/ami`],
      detail: { operation: 'Update', name: '/golden/web/ami', type: 'String', description: '' },
    };
    expect(applyInputTransformer(target.InputTransformer, event)).toEqual({
      kind: 'imageParameter',
      target: 'web',
      parameter: '/golden/web/ami',
      operation: 'Update',
    });
    expect(target.RetryPolicy).toEqual({ MaximumRetryAttempts: 8, MaximumEventAgeInSeconds: 3600 });
  });
});

describe('Image Builder trigger', () => {
  test("matches AVAILABLE images of the target's recipe only", () => {
    const pattern = ruleOf('api/imageBuilder').Properties.EventPattern as Record<string, unknown>;
    expect(pattern.source).toEqual(['aws.imagebuilder']);
    expect(pattern['detail-type']).toEqual(['EC2 Image Builder Image State Change']);
    expect(pattern.detail).toEqual({ state: { status: ['AVAILABLE'] } });
    const [prefix] = asList(pattern.resources) as { prefix: unknown }[];
    expect(flatten(prefix?.prefix)).toBe(
      `arn:aws:imagebuilder:${REGION}:${ACCOUNT}:image/understudy-understudy-api/`,
    );
    expect(stack.triggers.rules['web/imageBuilder']).toBeUndefined();
  });

  test('its input transformer hands the function the image ARN and status', () => {
    const [target] = rule('api/imageBuilder');
    const image = `arn:aws:imagebuilder:${REGION}:${ACCOUNT}:image/understudy-understudy-api/1.2.3/4`;
    const event = {
      source: 'aws.imagebuilder',
      'detail-type': 'EC2 Image Builder Image State Change',
      resources: [image],
      detail: { 'previous-state': { status: 'INTEGRATING' }, state: { status: 'AVAILABLE' } },
    };
    expect(applyInputTransformer(target.InputTransformer, event)).toEqual({
      kind: 'imageBuilder',
      target: 'api',
      image,
      status: 'AVAILABLE',
    });
  });
});

describe('schedules', () => {
  test('the schedule trigger runs the configured expression in its time zone, with the slot time as input', () => {
    const props = scheduleOf('web/schedule').Properties;
    expect(props.ScheduleExpression).toBe('cron(0 4 ? * SUN *)');
    expect(props.ScheduleExpressionTimezone).toBe('Europe/Berlin');
    expect(props.FlexibleTimeWindow).toEqual({ Mode: 'OFF' });
    const target = props.Target as Record<string, unknown>;
    expect(target.Arn).toEqual(fnArn());
    expect(target.RoleArn).toEqual({
      'Fn::GetAtt': [logicalId(stack.triggers.schedulerRole as never), 'Arn'],
    });
    expect(JSON.parse(target.Input as string)).toEqual({
      kind: 'schedule',
      target: 'web',
      scheduledTime: '<aws.scheduler.scheduled-time>',
    });
    expect(target.RetryPolicy).toEqual({ MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 3 });
  });

  test('self-healing checks the target every five minutes', () => {
    const props = scheduleOf('web/selfHeal').Properties;
    expect(props.ScheduleExpression).toBe('rate(5 minutes)');
    expect(JSON.parse((props.Target as { Input: string }).Input)).toEqual({
      kind: 'selfHeal',
      target: 'web',
    });
    expect(stack.triggers.schedules['api/selfHeal']).toBeUndefined();
    expect(stack.triggers.schedules['api/schedule']).toBeUndefined();
  });
});

describe('roles', () => {
  const triggerStatements = () => statementsOfRole(template, logicalId(stack.triggers.role as never));

  test('the scheduler role may invoke the trigger function and nothing else, assumed by Scheduler of this account', () => {
    const role = resources()[logicalId(stack.triggers.schedulerRole as never)] as Resource;
    expect(role.Properties.AssumeRolePolicyDocument).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Action: 'sts:AssumeRole',
          Effect: 'Allow',
          Principal: { Service: 'scheduler.amazonaws.com' },
          Condition: { StringEquals: { 'aws:SourceAccount': ACCOUNT } },
        },
      ],
    });
    const statements = statementsOfRole(template, logicalId(stack.triggers.schedulerRole as never));
    expect(statements.map((s) => [s.Action, s.Resource])).toEqual([['lambda:InvokeFunction', fnArn()]]);
  });

  test('the trigger function starts executions of the replace state machine only', () => {
    const start = triggerStatements().filter((s) => asList(s.Action).some((a) => a.startsWith('states:')));
    expect(start).toHaveLength(1);
    expect(start[0]?.Action).toBe('states:StartExecution');
    expect(asList(start[0]?.Resource).map(flatten)).toEqual([
      `<${logicalId(stack.orchestrator.stateMachine)}>`,
    ]);
  });

  test("the trigger function reads only the triggered targets' configs and image parameters", () => {
    const reads = triggerStatements()
      .filter((s) => asList(s.Action).includes('ssm:GetParameter'))
      .flatMap((s) => asList(s.Resource).map(flatten));
    const arn = (name: string) => `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/${name}`;
    expect(reads.sort()).toEqual(
      [
        arn('understudy/Understudy/targets/web'),
        arn('understudy/Understudy/targets/api'),
        arn('golden/web/ami'),
        arn('understudy/Understudy/images/api'),
      ].sort(),
    );
  });

  test("the trigger function's grants are exactly the calls its code makes", () => {
    const folder = join(REPO, 'lambdas', 'trigger');
    const prefix: Record<string, string> = {
      ec2: 'ec2',
      ssm: 'ssm',
      sfn: 'states',
      s3: 's3',
      scheduler: 'scheduler',
    };
    // lock.ts also takes, renews and releases locks; the trigger imports only its reader.
    const trigger = readFileSync(join(folder, 'trigger.ts'), 'utf8');
    expect(/import \{([^}]*)\} from '\.\.\/shared\/lock'/.exec(trigger)?.[1]?.trim()).toBe('lockHolder');
    const readsOnly: Record<string, string[]> = { lock: ['s3:GetObject'] };
    const called = new Set<string>();
    const own = readdirSync(folder).map((file) => join(folder, file));
    // The shared modules it imports make calls on its behalf too (the target's parameter read).
    const shared = own.flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/from '\.\.\/shared\/([\w-]+)'/g)].map(([, name]) =>
        join(REPO, 'lambdas', 'shared', `${name}.ts`),
      ),
    );
    for (const file of new Set([...own, ...shared])) {
      const reads = readsOnly[file.replace(/^.*\/(\w[\w-]*)\.ts$/, '$1')];
      if (file.includes('/shared/') && reads) {
        for (const action of reads) called.add(action);
        continue;
      }
      const text = readFileSync(file, 'utf8');
      const serviceOf = new Map<string, string>();
      for (const [, names, pkg] of text.matchAll(
        /import\s*\{([^}]*)\}\s*from '@aws-sdk\/client-([a-z0-9-]+)'/g,
      )) {
        for (const name of (names ?? '').split(',').map((n) => n.replace(/^\s*type\s+/, '').trim())) {
          serviceOf.set(name, prefix[pkg ?? ''] ?? `unknown-${pkg}`);
        }
      }
      for (const [, op] of text.matchAll(/new (\w+)Command\(/g)) {
        const service = serviceOf.get(`${op}Command`);
        if (service) called.add(`${service}:${op}`);
      }
    }
    const granted = new Set(triggerStatements().flatMap((s) => asList(s.Action)));
    const baseline = [
      'logs:CreateLogStream',
      'logs:PutLogEvents',
      'xray:PutTraceSegments',
      'xray:PutTelemetryRecords',
      // A deferral schedule runs as the scheduler role, which its creator must be allowed to pass.
      'iam:PassRole',
      // Without ListBucket a missing lock reads as AccessDenied instead of NoSuchKey.
      's3:ListBucket',
    ];
    expect([...granted].sort()).toEqual([...called, ...baseline].sort());
  });

  test('the trigger function defers only into its own schedule group, passing only the scheduler role, to Scheduler', () => {
    const statements = triggerStatements();
    const create = statements.filter((s) => asList(s.Action).includes('scheduler:CreateSchedule'));
    expect(create.map((s) => [s.Action, asList(s.Resource).map(flatten)])).toEqual([
      ['scheduler:CreateSchedule', [`arn:aws:scheduler:${REGION}:${ACCOUNT}:schedule/Understudy-triggers/*`]],
    ]);
    const pass = statements.filter((s) => asList(s.Action).includes('iam:PassRole'));
    expect(pass).toHaveLength(1);
    expect(asList(pass[0]?.Resource).map(flatten)).toEqual([
      `<${logicalId(stack.triggers.schedulerRole as never)}.Arn>`,
    ]);
    expect(pass[0]?.Condition).toEqual({
      StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' },
    });
    const group = resources()[stack.resolve(stack.triggers.scheduleGroup?.logicalId) as string];
    expect(group?.Properties.Name).toBe('Understudy-triggers');
  });

  test("the trigger function reads the triggered targets' locks, and the images of the pipelines it listens to", () => {
    const statements = triggerStatements();
    const locks = statements.filter((s) => asList(s.Action).some((a) => a.startsWith('s3:Get')));
    expect(locks.map((s) => s.Action)).toEqual(['s3:GetObject']);
    expect(asList(locks[0]?.Resource).map(flatten).sort()).toEqual(
      [
        `<${logicalId(stack.runs.bucket)}.Arn>/locks/web.json`,
        `<${logicalId(stack.runs.bucket)}.Arn>/locks/api.json`,
      ].sort(),
    );
    // Image Builder tags each AMI it distributes with the build's ARN: EC2 finds it, no Image Builder read.
    const images = statements.filter((s) => asList(s.Action).includes('ec2:DescribeImages'));
    expect(images.map((s) => asList(s.Resource))).toEqual([['*']]);
    expect(statements.flatMap((s) => asList(s.Action)).filter((a) => a.startsWith('imagebuilder:'))).toEqual(
      [],
    );
  });

  test('the trigger function gets the state machine and the parameter prefix, and never logs its events', () => {
    const [, fn] = ofType('AWS::Lambda::Function').find(
      ([id]) => id === logicalId(stack.triggers.function as never),
    ) as [string, Resource];
    const variables = (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(variables.PARAMETER_PREFIX).toBe('/understudy/Understudy');
    expect(variables.STATE_MACHINE_ARN).toEqual({ Ref: logicalId(stack.orchestrator.stateMachine) });
    expect(variables.RUNS_BUCKET).toEqual({ Ref: logicalId(stack.runs.bucket) });
    expect(variables.SCHEDULE_GROUP).toBe('Understudy-triggers');
    expect(variables.SCHEDULER_ROLE_ARN).toEqual({
      'Fn::GetAtt': [logicalId(stack.triggers.schedulerRole as never), 'Arn'],
    });
    expect(variables).not.toHaveProperty('POWERTOOLS_LOGGER_LOG_EVENT');
  });

  test('cdk-nag AwsSolutions reports nothing unacknowledged with every trigger on', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => `${v.ruleName}`)).toEqual([]);
  });
});

describe('config', () => {
  const problems = (mutate: (web: Record<string, unknown>) => Record<string, unknown>): string[] => {
    const config = exampleConfig();
    const [web, api] = config.targets;
    try {
      parseConfig({ ...config, targets: [mutate(web as never), api] });
      return [];
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
  };

  test('an Image Builder trigger on a target that brings its own image is refused, naming the field', () => {
    expect(problems((web) => ({ ...web, triggers: { imageBuilder: true } }))).toEqual([
      'targets[0].triggers.imageBuilder: needs the image pipeline Understudy builds: set image.build',
    ]);
  });

  test('self-healing with a certificate restored from the old box is refused, naming the field', () => {
    const out = problems((web) => ({ ...web, tls: { mode: 'restore' }, triggers: { selfHeal: {} } }));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^targets\[0\]\.triggers\.selfHeal: a self-healing run cannot restore/);
  });

  test('a window with an unknown time zone, a bad time or no length is refused, naming the field', () => {
    const out = problems((web) => ({
      ...web,
      triggers: {
        maintenanceWindows: [
          { days: ['sun'], start: '02:00', end: '06:00', timezone: 'Mars/Olympus' },
          { days: ['sun'], start: '2am', end: '06:00' },
          { days: ['sun'], start: '03:00', end: '03:00' },
        ],
      },
    }));
    expect(out).toEqual([
      'targets[0].triggers.maintenanceWindows[0].timezone: use an IANA time zone such as UTC or Europe/Berlin',
      'targets[0].triggers.maintenanceWindows[1].start: use a 24-hour time such as 02:00',
      'targets[0].triggers.maintenanceWindows[2].end: end must differ from start (a window of no length would refuse every trigger)',
    ]);
  });

  test('a schedule expression that Scheduler would not take is refused', () => {
    expect(problems((web) => ({ ...web, triggers: { schedule: { expression: 'every sunday' } } }))).toEqual([
      'targets[0].triggers.schedule.expression: use a schedule expression such as cron(0 3 ? * SUN *) or rate(7 days)',
    ]);
  });
});

describe('maintenance windows (preflight)', () => {
  const weekend = MaintenanceWindowSchema.parse({
    days: ['sat'],
    start: '22:00',
    end: '02:00',
    timezone: 'Europe/Berlin',
  });

  test('a window past midnight covers the early hours of the next day, in its own time zone and DST', () => {
    // Saturday 4 July 2026, summer time (UTC+2).
    expect(inWindow(weekend, new Date('2026-07-04T20:30:00Z'))).toBe(true); // Sat 22:30
    expect(inWindow(weekend, new Date('2026-07-04T23:59:00Z'))).toBe(true); // Sun 01:59
    expect(inWindow(weekend, new Date('2026-07-05T00:00:00Z'))).toBe(false); // Sun 02:00
    expect(inWindow(weekend, new Date('2026-07-03T23:30:00Z'))).toBe(false); // Sat 01:30: Friday's night
    // Winter time (UTC+1): Saturday 5 December 2026, 22:30 local.
    expect(inWindow(weekend, new Date('2026-12-05T21:30:00Z'))).toBe(true);
    expect(inWindow(weekend, new Date('2026-12-05T20:30:00Z'))).toBe(false);
  });

  const target = (triggers: Record<string, unknown>) => {
    const [web] = parseConfig({
      ...exampleConfig(),
      targets: [{ ...exampleConfig().targets[0], triggers }],
    }).targets;
    return web as NonNullable<typeof web>;
  };
  const outside = new Date('2026-07-01T12:00:00Z');
  const run = (trigger?: 'schedule' | 'selfHeal') => ({
    target: 'web',
    action: 'replace' as const,
    dryRun: false,
    ...(trigger ? { trigger } : {}),
  });

  test('an automatic trigger outside every window is refused, naming the field and the windows', () => {
    const web = target({
      maintenanceWindows: [{ days: ['sat'], start: '22:00', end: '02:00', timezone: 'Europe/Berlin' }],
    });
    expect(() => checkMaintenanceWindow(web, run('schedule'), outside)).toThrow(
      /^triggers\.maintenanceWindows: the schedule trigger fired at 2026-07-01T12:00:00\.000Z \(Wed 14:00 Europe\/Berlin\), outside every maintenance window of target web \(sat 22:00-02:00 Europe\/Berlin\)/,
    );
    expect(() =>
      checkMaintenanceWindow(web, run('schedule'), new Date('2026-07-04T21:00:00Z')),
    ).not.toThrow();
  });

  test('manual runs are never held, self-healing only when it asks to be', () => {
    const windows = [{ days: ['sat'], start: '22:00', end: '02:00' }];
    expect(() =>
      checkMaintenanceWindow(target({ maintenanceWindows: windows }), run(), outside),
    ).not.toThrow();
    expect(() =>
      checkMaintenanceWindow(target({ maintenanceWindows: windows, selfHeal: {} }), run('selfHeal'), outside),
    ).not.toThrow();
    expect(() =>
      checkMaintenanceWindow(
        target({ maintenanceWindows: windows, selfHeal: { onlyInMaintenanceWindows: true } }),
        run('selfHeal'),
        outside,
      ),
    ).toThrow(/^triggers\.maintenanceWindows: the selfHeal trigger/);
  });
});
