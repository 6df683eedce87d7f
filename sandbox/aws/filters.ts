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

type FilterValues = string | undefined | readonly (string | undefined)[];

/**
 * Applies EC2 `Filters`: every filter must match (AND), any of its values may (OR). `fields` holds the
 * resource's values by filter name; `tags`, when the resource has them, answers `tag:<key>`, `tag-key`
 * and `tag-value`. EC2 refuses a filter name the resource does not support.
 */
export const matchesFilters = (
  filters: readonly Filter[] | undefined,
  fields: Readonly<Record<string, FilterValues>>,
  tags?: ReadonlyMap<string, string>,
): boolean =>
  (filters ?? []).every((filter) => {
    const name = filter.Name ?? '';
    const known = Object.hasOwn(fields, name);
    const field = known ? fields[name] : tags && tagFilterValues(name, tags);
    if (!known && field === undefined) throw fail('InvalidParameterValue', `The filter '${name}' is invalid`);
    const actual = typeof field === 'string' || field === undefined ? [field] : field;
    const wanted = (filter.Values ?? []).map(wildcard);
    return actual.some((v) => v !== undefined && wanted.some((w) => w.test(v)));
  });

/** `tag:<key>`, `tag-key`, `tag-value` over a tag map; undefined when `name` is not a tag filter. */
const tagFilterValues = (
  name: string,
  tags: ReadonlyMap<string, string>,
): (string | undefined)[] | undefined => {
  if (name.startsWith('tag:')) return [tags.get(name.slice(4))];
  if (name === 'tag-key') return [...tags.keys()];
  if (name === 'tag-value') return [...tags.values()];
  return undefined;
};

/** EC2 refuses a request naming any resource it does not have, before it filters anything. */
export const requireIds = (
  ids: readonly string[] | undefined,
  exists: (id: string) => boolean,
  notFound: (missing: readonly [string, ...string[]]) => Error,
): void => {
  const missing = (ids ?? []).filter((id) => !exists(id));
  if (missing.length > 0) throw notFound(missing as [string, ...string[]]);
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
