import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXECUTION_TIMEOUT_SECONDS } from '../../lambdas/shared/constants';
import { ALL_ERROR_NAMES, PLATFORM_ERROR_NAMES } from '../../lambdas/shared/errors';
import { NOTIFICATION_TOPIC_PLACEHOLDER, placeholderFor, STEP_NAMES } from '../../lib/steps';

type State = Record<string, unknown> & { Type: string };
const aslPath = join(__dirname, '..', '..', 'statemachine', 'replace.asl.json');
const text = readFileSync(aslPath, 'utf8');
const asl = JSON.parse(text) as { StartAt: string; TimeoutSeconds?: number; States: Record<string, State> };
const tasks = Object.entries(asl.States).filter(([, s]) => s.Type === 'Task');
/** Whether a state runs one of our functions (every task but the outcome's `sns:publish` does). */
const isFunctionTask = (s: State) =>
  (s.Resource as string).startsWith('$' + '{') ||
  (s.Resource as string).startsWith('arn:aws:states:::lambda:');
const functionTasks = tasks.filter(([, s]) => isFunctionTask(s));
/** The run's last tasks: a failure there must fail the execution at that state, where a redrive resumes. */
const LAST_TASKS = ['Finish', 'AnnounceOutcome'];
const retriers = (s: State) => (s.Retry ?? []) as { ErrorEquals: string[] }[];
const catchers = (s: State) => (s.Catch ?? []) as { ErrorEquals: string[]; Next: string }[];

/** Walks every key of a JSON value. */
const keysOf = (value: unknown, found = new Set<string>()): Set<string> => {
  if (Array.isArray(value)) for (const v of value) keysOf(v, found);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      found.add(k);
      keysOf(v, found);
    }
  }
  return found;
};

/** States reachable from `start` through Next/Default/Choices (not Catch). */
const reachable = (start: string, seen = new Set<string>()): Set<string> => {
  if (seen.has(start)) return seen;
  seen.add(start);
  const state = asl.States[start];
  if (!state) return seen;
  const next = [
    state.Next,
    state.Default,
    ...((state.Choices as { Next: string }[] | undefined) ?? []).map((c) => c.Next),
  ];
  for (const n of next) if (typeof n === 'string') reachable(n, seen);
  return seen;
};

describe('the replace state machine definition', () => {
  it('uses JSONPath only, because the local engine silently ignores JSONata and variables', () => {
    const keys = keysOf(asl);
    for (const forbidden of ['QueryLanguage', 'Arguments', 'Output', 'Assign', 'Condition']) {
      expect(keys.has(forbidden)).toBe(false);
    }
  });

  it('holds no literal account ARN: functions and the topic come in as placeholders', () => {
    expect(text).not.toMatch(/arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}/);
    const announce = asl.States.AnnounceOutcome as State;
    expect((announce.Parameters as Record<string, string>).TopicArn).toBe(
      `\${${NOTIFICATION_TOPIC_PLACEHOLDER}}`,
    );
    for (const [, state] of functionTasks) {
      const resource = state.Resource as string;
      const fn = resource.startsWith('arn:aws:states:::')
        ? ((state.Parameters as Record<string, string>).FunctionName ?? '')
        : resource;
      expect(fn).toMatch(/^\$\{[A-Za-z]+FunctionArn\}$/);
    }
  });

  it('names only step functions whose handler exists in lambdas/', () => {
    const placeholders = new Set(
      [...text.matchAll(/\$\{([A-Za-z]+FunctionArn)\}/g)].map((m) => m[1] as string),
    );
    const stepOf = new Map(STEP_NAMES.map((step) => [placeholderFor(step), step]));
    expect(placeholders.size).toBeGreaterThan(5);
    for (const placeholder of placeholders) {
      const step = stepOf.get(placeholder);
      expect({ placeholder, step: step ?? 'none' }).toEqual({ placeholder, step: expect.any(String) });
      expect(existsSync(join(__dirname, '..', '..', 'lambdas', step ?? '', 'handler.ts'))).toBe(true);
    }
  });

  it('retries Transient on every task whose function can throw it', () => {
    for (const [name, state] of functionTasks) {
      expect({ name, transient: retriers(state).some((r) => r.ErrorEquals.includes('Transient')) }).toEqual({
        name,
        transient: true,
      });
    }
  });

  it('retries Lambda service errors, throttling included, on every function task', () => {
    for (const [name, state] of functionTasks) {
      const retried = retriers(state).flatMap((r) => r.ErrorEquals);
      expect({ name, throttling: retried.includes('Lambda.TooManyRequestsException') }).toEqual({
        name,
        throttling: true,
      });
      expect({ name, service: retried.includes('Lambda.ServiceException') }).toEqual({ name, service: true });
    }
  });

  it('catches every error on every task before the run ends, so each failure reaches Rollback or Finish', () => {
    for (const [name, state] of tasks.filter(([n]) => !LAST_TASKS.includes(n))) {
      expect({ name, catchesAll: catchers(state).some((c) => c.ErrorEquals.includes('States.ALL')) }).toEqual(
        {
          name,
          catchesAll: true,
        },
      );
    }
  });

  it('sets an explicit timeout on every task, since the default is a year on AWS and 60 s locally', () => {
    for (const [name, state] of tasks) {
      expect({
        name,
        timeout: state.TimeoutSeconds !== undefined || state.TimeoutSecondsPath !== undefined,
      }).toEqual({
        name,
        timeout: true,
      });
    }
  });

  it('matches only error names from the shared list or the platform', () => {
    const known = new Set([...ALL_ERROR_NAMES, ...PLATFORM_ERROR_NAMES]);
    const used = tasks.flatMap(([, s]) => [...retriers(s), ...catchers(s)].flatMap((r) => r.ErrorEquals));
    expect(used.filter((name) => !known.has(name))).toEqual([]);
  });

  it('bounds the execution by the same timeout the lock lease is derived from', () => {
    expect(asl.TimeoutSeconds).toBe(EXECUTION_TIMEOUT_SECONDS);
  });

  it('sends every failure after Launch to Rollback until the EIP is settled', () => {
    const launchOnward = reachable('Launch');
    for (const name of [
      'Launch',
      'AwaitRunning',
      'AwaitReadiness',
      'PackCertificate',
      'AwaitPack',
      'Prepare',
      'AwaitPrepare',
      'Switch',
      'Certificate',
      'AwaitCertificate',
      'Probe',
    ]) {
      expect(launchOnward.has(name)).toBe(true);
      const state = asl.States[name] as State;
      expect({ name, to: catchers(state).map((c) => c.Next) }).toEqual({ name, to: ['Rollback'] });
    }
  });

  describe('restore: the old box packs its certificate between readiness and Prepare', () => {
    const state = (name: string) => asl.States[name] as State;
    type Rule = {
      And?: Rule[];
      Variable?: string;
      IsPresent?: boolean;
      StringEquals?: string;
      Next?: string;
    };
    /** Evaluates the JSONPath-only comparison rules the ASL uses against a plan with `mode`. */
    const matches = (rule: Rule, mode: string | undefined): boolean => {
      if (rule.And) return rule.And.every((r) => matches(r, mode));
      if (rule.Variable !== '$.run.target.tls.mode') return false;
      if (rule.IsPresent !== undefined) return rule.IsPresent === (mode !== undefined);
      return mode !== undefined && rule.StringEquals === mode;
    };
    const route = (choice: string, mode: string | undefined): string => {
      const s = state(choice);
      const hit = (s.Choices as Rule[]).find((rule) => matches(rule, mode));
      return (hit?.Next ?? s.Default) as string;
    };

    it('routes restore to PackCertificate and every other mode straight to Prepare', () => {
      expect(state('AwaitReadiness').Next).toBe('CertificateSource');
      expect(route('CertificateSource', 'restore')).toBe('PackCertificate');
      for (const mode of ['dns-01', 'http-01', 'none'])
        expect(route('CertificateSource', mode)).toBe('Prepare');
    });

    it('never fails a Choice on a plan without a mode (a States.Runtime there would skip Rollback and Finish)', () => {
      for (const choice of ['CertificateSource', 'CertificateNeeded']) {
        const rules = state(choice).Choices as Rule[];
        for (const rule of rules) {
          expect(rule.And?.[0]).toEqual({ Variable: '$.run.target.tls.mode', IsPresent: true });
        }
        expect(route(choice, undefined)).toBe(state(choice).Default);
      }
      expect(route('CertificateNeeded', 'http-01')).toBe('Certificate');
      expect(route('CertificateNeeded', 'restore')).toBe('Probe');
    });

    it('keeps the pack result under $.pack, polls its command there, then goes on to Prepare', () => {
      const pack = state('PackCertificate');
      expect(pack.Resource).toBe(`\${${placeholderFor('pack-certificate')}}`);
      expect(pack.ResultPath).toBe('$.pack');
      expect(pack.Next).toBe('AwaitPack');
      const poll = state('AwaitPack');
      expect(poll.Resource).toBe(`\${${placeholderFor('await-command')}}`);
      expect(poll.Parameters).toEqual({ 'command.$': '$.pack.command', purpose: 'certificate pack' });
      expect(poll.ResultPath).toBe('$.pack.result');
      expect(poll.Next).toBe('Prepare');
    });

    it('polls while the old box agent is offline or the command runs, like the other command steps', () => {
      expect(retriers(state('PackCertificate')).flatMap((r) => r.ErrorEquals)).toContain('AgentNotOnline');
      expect(retriers(state('AwaitPack')).flatMap((r) => r.ErrorEquals)).toContain('CommandPending');
      expect(retriers(state('PackCertificate')).flatMap((r) => r.ErrorEquals)).not.toContain('CommandFailed');
    });
  });

  it('waits for readiness with a task token, a timeout and a heartbeat from the target config', () => {
    const wait = asl.States.AwaitReadiness as State;
    expect(wait.Resource).toBe('arn:aws:states:::lambda:invoke.waitForTaskToken');
    expect((wait.Parameters as { Payload: Record<string, string> }).Payload['taskToken.$']).toBe(
      '$$.Task.Token',
    );
    expect(wait.TimeoutSecondsPath).toBe('$.run.target.readiness.timeoutSeconds');
    expect(wait.HeartbeatSecondsPath).toBe('$.run.target.readiness.heartbeatSeconds');
  });

  it('publishes the outcome from the state machine, right after Finish composed it, and only there', () => {
    const announce = asl.States.AnnounceOutcome as State;
    expect(announce.Resource).toBe('arn:aws:states:::sns:publish');
    expect(asl.States.Finish?.Next).toBe('AnnounceOutcome');
    expect(announce.Parameters).toMatchObject({
      'Subject.$': '$.finish.announcement.Subject',
      'Message.$': '$.finish.announcement.Message',
      'MessageAttributes.$': '$.finish.announcement.MessageAttributes',
    });
    expect(tasks.filter(([, s]) => !isFunctionTask(s)).map(([name]) => name)).toEqual(['AnnounceOutcome']);
    // Discarding the Publish result keeps $.finish (the Fail state's ErrorPath) as Finish left it.
    expect(announce.ResultPath).toBeNull();
    expect(announce.Next).toBe('Outcome');
  });

  it('retries the announcement only on a failed or timed-out Publish', () => {
    const announce = asl.States.AnnounceOutcome as State;
    expect(
      retriers(announce)
        .flatMap((r) => r.ErrorEquals)
        .sort(),
    ).toEqual(['States.TaskFailed', 'States.Timeout']);
  });

  it('catches nothing on Finish and AnnounceOutcome: a redrive resumes at the state that failed, not at a Fail state after it', () => {
    for (const name of LAST_TASKS) {
      expect({ name, catchers: catchers(asl.States[name] as State) }).toEqual({ name, catchers: [] });
    }
  });

  it('ends every path in Finish so that exactly one outcome is published', () => {
    for (const [name, state] of Object.entries(asl.States)) {
      if ([...LAST_TASKS, 'Outcome', 'Done', 'Failed'].includes(name)) continue;
      const routes = reachable(name);
      for (const c of catchers(state)) reachable(c.Next, routes);
      expect({ name, reachesFinish: routes.has('Finish') }).toEqual({ name, reachesFinish: true });
    }
  });

  describe('rollback within the window (action "rollback")', () => {
    const state = (name: string) => asl.States[name] as State;
    const branch = reachable('StartRetired');

    it('routes a rollback plan from RouteByPlan to StartRetired, a replacement to Launch', () => {
      const choices = state('RouteByPlan').Choices as {
        Variable: string;
        StringEquals: string;
        Next: string;
      }[];
      expect(choices.map((c) => [c.Variable, c.StringEquals, c.Next])).toEqual([
        ['$.run.action', 'replace', 'Launch'],
        ['$.run.action', 'rollback', 'StartRetired'],
      ]);
    });

    it('sends every failure up to the end of the probe to RevertRestore, never to the replacement Rollback', () => {
      for (const name of [
        'StartRetired',
        'AwaitRestored',
        'AwaitRestoreCheck',
        'RestoreSwitch',
        'RestoreProbe',
      ]) {
        expect(branch.has(name)).toBe(true);
        expect({ name, to: catchers(state(name)).map((c) => c.Next) }).toEqual({
          name,
          to: ['RevertRestore'],
        });
      }
      expect(branch.has('Rollback')).toBe(false);
      expect(branch.has('Launch')).toBe(false);
    });

    it('waits for the old box itself, not for a readiness agent event', () => {
      expect(
        [...branch].filter((name) => String(state(name).Resource ?? '').includes('waitForTaskToken')),
      ).toEqual([]);
      const polls = retriers(state('AwaitRestored')).flatMap((r) => r.ErrorEquals);
      expect(polls).toEqual(expect.arrayContaining(['InstanceNotReady', 'AgentNotOnline']));
      expect(state('AwaitRestoreCheck').Parameters).toMatchObject({ 'command.$': '$.restore.command' });
    });

    it('reuses the switch, probe, reconcile and retire functions on the restored box, and a reconcile failure is not a revert', () => {
      expect(state('RestoreSwitch').Resource).toBe(state('Switch').Resource);
      expect(state('RestoreProbe').Resource).toBe(state('Probe').Resource);
      expect(state('RestoreReconcile').Resource).toBe(state('Reconcile').Resource);
      expect(state('RestoreRetire').Resource).toBe(state('Retire').Resource);
      expect(
        catchers(state('RestoreReconcile')).map((c) => [c.Next, (c as { ResultPath?: string }).ResultPath]),
      ).toEqual([['RestoreRetire', '$.reconcileError']]);
      expect(state('StartRetired').ResultPath).toBe('$.launch');
      expect(state('RevertRestore').ResultPath).toBe('$.rollback');
    });
  });
});
