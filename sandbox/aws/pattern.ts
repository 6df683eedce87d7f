/**
 * EventBridge event-pattern matching, the subset rules for this product use: exact values in arrays,
 * nested objects, `prefix`, `exists`, `anything-but` and `numeric` comparisons. A pattern field
 * matches when the event's value (or any element of an array value) matches any listed condition.
 */

type Json = unknown;

const isObject = (value: Json): value is Record<string, Json> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const numeric = (value: Json, conditions: readonly Json[]): boolean => {
  if (typeof value !== 'number') return false;
  for (let i = 0; i + 1 < conditions.length; i += 2) {
    const op = conditions[i];
    const bound = conditions[i + 1];
    if (typeof bound !== 'number') return false;
    const ok =
      (op === '=' && value === bound) ||
      (op === '<' && value < bound) ||
      (op === '<=' && value <= bound) ||
      (op === '>' && value > bound) ||
      (op === '>=' && value >= bound);
    if (!ok) return false;
  }
  return true;
};

const matchesCondition = (value: Json, present: boolean, condition: Json): boolean => {
  if (!isObject(condition)) return present && value === condition;
  if ('exists' in condition) return condition.exists === present;
  if (!present) return false;
  if ('prefix' in condition) return typeof value === 'string' && value.startsWith(String(condition.prefix));
  if ('suffix' in condition) return typeof value === 'string' && value.endsWith(String(condition.suffix));
  if ('anything-but' in condition) {
    const excluded = condition['anything-but'];
    const list = Array.isArray(excluded) ? excluded : [excluded];
    return !list.includes(value);
  }
  if ('numeric' in condition && Array.isArray(condition.numeric)) return numeric(value, condition.numeric);
  return false;
};

const matchesField = (value: Json, present: boolean, conditions: readonly Json[]): boolean => {
  if (Array.isArray(value)) {
    return value.some((item) => conditions.some((c) => matchesCondition(item, true, c)));
  }
  return conditions.some((c) => matchesCondition(value, present, c));
};

export const matchesPattern = (pattern: Record<string, Json>, event: Json): boolean => {
  const subject = isObject(event) ? event : {};
  return Object.entries(pattern).every(([key, expected]) => {
    const present = Object.hasOwn(subject, key);
    const value = subject[key];
    if (Array.isArray(expected)) return matchesField(value, present, expected);
    if (isObject(expected)) return present && isObject(value) && matchesPattern(expected, value);
    // A bare scalar is not valid in EventBridge patterns; treat it as a one-element list.
    return matchesField(value, present, [expected]);
  });
};
