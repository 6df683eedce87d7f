import type { Filter } from '@aws-sdk/client-ec2';
import { errorsFor } from './errors';

const fail = errorsFor('ec2');

/** EC2 filter values accept `*` and `?` wildcards. */
const wildcard = (value: string): RegExp =>
  new RegExp(
    `^${value
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );

/**
 * Applies EC2 `Filters`: every filter must match (AND), any of its values may (OR). `valuesOf` answers
 * the resource's values for a filter name, or undefined for a name this resource does not support
 * (EC2 refuses unknown filter names).
 */
export const matchesFilters = (
  filters: readonly Filter[] | undefined,
  valuesOf: (name: string) => readonly (string | undefined)[] | undefined,
): boolean =>
  (filters ?? []).every((filter) => {
    const name = filter.Name ?? '';
    const actual = valuesOf(name);
    if (actual === undefined) throw fail('InvalidParameterValue', `The filter '${name}' is invalid`);
    const wanted = (filter.Values ?? []).map(wildcard);
    return actual.some((v) => v !== undefined && wanted.some((w) => w.test(v)));
  });

/** `tag:<key>`, `tag-key`, `tag-value` over a tag map; undefined when `name` is not a tag filter. */
export const tagFilterValues = (
  name: string,
  tags: ReadonlyMap<string, string>,
): (string | undefined)[] | undefined => {
  if (name.startsWith('tag:')) return [tags.get(name.slice(4))];
  if (name === 'tag-key') return [...tags.keys()];
  if (name === 'tag-value') return [...tags.values()];
  return undefined;
};

export const tagList = (tags: ReadonlyMap<string, string>) =>
  [...tags].map(([Key, Value]) => ({ Key, Value }));

/** JSON with sorted keys and without undefined members: two requests with equal meaning compare equal. */
export const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)) {
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>)
          .filter(([, member]) => member !== undefined)
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      );
    }
    return v;
  });
