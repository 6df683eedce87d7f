import { ConfigError, groupTargets, parseConfig } from '../../lambdas/shared/config';

const target = (name: string, tags?: Record<string, string>) => ({
  name,
  allocationId: 'eipalloc-0123456789abcdef0',
  domain: `${name}.example.com`,
  image: { imageId: 'ami-0123456789abcdef0' },
  tls: { mode: 'none' },
  ...(tags ? { tags } : {}),
});

const problems = (raw: unknown): string[] => {
  try {
    parseConfig(raw);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
};

describe('groups (fleet waves)', () => {
  test('a group of listed targets gets wave defaults: one at a time, no failure tolerated', () => {
    const config = parseConfig({
      targets: [target('web'), target('api')],
      groups: [{ name: 'all', targets: ['api', 'web'] }],
    });
    const [group] = config.groups ?? [];
    expect(group).toEqual({
      name: 'all',
      targets: ['api', 'web'],
      maxConcurrency: 1,
      toleratedFailurePercentage: 0,
    });
    expect(groupTargets(config, group as NonNullable<typeof group>)).toEqual(['api', 'web']);
  });

  test('a tag selector picks the targets whose config tags carry it, in config order', () => {
    const config = parseConfig({
      targets: [
        target('web', { tier: 'front' }),
        target('db', { tier: 'data' }),
        target('api', { tier: 'front' }),
      ],
      groups: [
        {
          name: 'front',
          targets: { tag: { key: 'tier', value: 'front' } },
          maxConcurrency: 2,
          toleratedFailurePercentage: 20,
        },
      ],
    });
    const [group] = config.groups ?? [];
    expect(groupTargets(config, group as NonNullable<typeof group>)).toEqual(['web', 'api']);
  });

  test('refuses a group naming a target that is not configured, naming the field', () => {
    expect(
      problems({ targets: [target('web')], groups: [{ name: 'all', targets: ['web', 'mail'] }] }),
    ).toEqual([
      'groups[0].targets[1]: no target "mail": declare it under targets or remove it from the group',
    ]);
  });

  test('refuses a tag selector that selects no target', () => {
    expect(
      problems({
        targets: [target('web', { tier: 'front' })],
        groups: [{ name: 'data', targets: { tag: { key: 'tier', value: 'data' } } }],
      }),
    ).toEqual([
      'groups[0].targets.tag: no target carries this tag in its tags: tag at least one target or fix the selector',
    ]);
  });

  test('refuses duplicate group names and out-of-range wave settings', () => {
    const found = problems({
      targets: [target('web')],
      groups: [
        { name: 'all', targets: ['web'], maxConcurrency: 0 },
        { name: 'all', targets: ['web'], toleratedFailurePercentage: 101 },
      ],
    });
    expect(found.some((p) => p.startsWith('groups[0].maxConcurrency:'))).toBe(true);
    expect(found.some((p) => p.startsWith('groups[1].toleratedFailurePercentage:'))).toBe(true);
  });

  test('reports a duplicate group name at the second one', () => {
    expect(
      problems({
        targets: [target('web')],
        groups: [
          { name: 'all', targets: ['web'] },
          { name: 'all', targets: ['web'] },
        ],
      }),
    ).toEqual(['groups[1].name: duplicate group name "all"']);
  });
});
