/**
 * A small IAM policy evaluator for identity policies of one account: enough of AWS's evaluation logic
 * to tell whether the statements a stack generated allow a request, and if not, why. Explicit Deny
 * wins, then any Allow; nothing matched is an implicit deny. Unknown condition operators throw rather
 * than guess, so a policy using one cannot pass by accident.
 */

export type ContextValue = string | boolean | readonly string[];

/** One authorization request: what IAM sees for one action on one resource. */
export interface AuthRequest {
  /** `service:Action`, e.g. `ec2:RunInstances`. */
  readonly action: string;
  /** The resource ARN, or `*` for actions without resource-level permissions. */
  readonly resource: string;
  /** Condition keys present in the request context; a multivalued key is an array. */
  readonly context: Readonly<Record<string, ContextValue>>;
}

export interface PolicyStatement {
  readonly Sid?: string;
  readonly Effect: 'Allow' | 'Deny' | string;
  readonly Action?: string | readonly string[];
  readonly NotAction?: string | readonly string[];
  readonly Resource?: string | readonly string[];
  readonly NotResource?: string | readonly string[];
  readonly Condition?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}

export interface Decision {
  readonly allowed: boolean;
  /** The statement that decided: the first matching Deny, else the first matching Allow. */
  readonly decidedBy?: string;
  /** For a denied request: each statement whose action and resource matched, and the condition that failed. */
  readonly reasons: readonly string[];
}

const list = <T>(value: T | readonly T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? [...(value as readonly T[])] : [value as T];

const globRegex = (pattern: string, flags: string): RegExp =>
  new RegExp(
    `^${pattern
      .split('')
      .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\/]/g, '\\$&')))
      .join('')}$`,
    flags,
  );

/** IAM's `*` / `?` glob; action names compare case-insensitively, resources and values exactly. */
export const globMatch = (pattern: string, value: string, ignoreCase = false): boolean =>
  globRegex(pattern, ignoreCase ? 'i' : '').test(value);

const actionMatches = (patterns: readonly string[], action: string) =>
  patterns.some((p) => globMatch(p, action, true));

/** ARNs compare per colon-separated part for the first five parts, glob within each. */
const arnLike = (pattern: string, arn: string): boolean => {
  if (pattern === '*') return true;
  const p = pattern.split(':');
  const a = arn.split(':');
  if (p.length < 6 || a.length < 6) return globMatch(pattern, arn);
  for (let i = 0; i < 5; i++) if (!globMatch(p[i] ?? '', a[i] ?? '')) return false;
  return globMatch(p.slice(5).join(':'), a.slice(5).join(':'));
};

const resourceMatches = (patterns: readonly string[], resource: string) =>
  patterns.some((p) => (resource === '*' ? p === '*' : arnLike(p, resource)));

type Compare = (want: string, got: string) => boolean;
const COMPARE: Record<string, { compare: Compare; negated: boolean }> = {
  StringEquals: { compare: (w, g) => w === g, negated: false },
  StringNotEquals: { compare: (w, g) => w === g, negated: true },
  StringEqualsIgnoreCase: { compare: (w, g) => w.toLowerCase() === g.toLowerCase(), negated: false },
  StringLike: { compare: (w, g) => globMatch(w, g), negated: false },
  StringNotLike: { compare: (w, g) => globMatch(w, g), negated: true },
  ArnEquals: { compare: (w, g) => arnLike(w, g), negated: false },
  ArnLike: { compare: (w, g) => arnLike(w, g), negated: false },
  ArnNotEquals: { compare: (w, g) => arnLike(w, g), negated: true },
  ArnNotLike: { compare: (w, g) => arnLike(w, g), negated: true },
  Bool: { compare: (w, g) => w.toLowerCase() === g.toLowerCase(), negated: false },
};

/** Condition keys are case-insensitive; their values are not. */
const lookUp = (context: AuthRequest['context'], key: string): ContextValue | undefined => {
  const wanted = key.toLowerCase();
  for (const [k, v] of Object.entries(context)) if (k.toLowerCase() === wanted) return v;
  return undefined;
};

const show = (value: ContextValue | undefined) => (value === undefined ? 'absent' : JSON.stringify(value));

/** Evaluates one `Operator: { key: values }` block; returns why it failed, or undefined when it holds. */
const conditionFails = (
  operatorName: string,
  block: Readonly<Record<string, unknown>>,
  context: AuthRequest['context'],
): string | undefined => {
  let operator = operatorName;
  let quantifier: 'ForAnyValue' | 'ForAllValues' | undefined;
  const prefix = /^(ForAnyValue|ForAllValues):(.+)$/.exec(operator);
  if (prefix) {
    quantifier = prefix[1] as 'ForAnyValue' | 'ForAllValues';
    operator = prefix[2] as string;
  }
  const ifExists = operator.endsWith('IfExists');
  if (ifExists) operator = operator.slice(0, -'IfExists'.length);

  for (const [key, raw] of Object.entries(block)) {
    const wants = list(raw as string | string[]).map(String);
    const got = lookUp(context, key);
    const why = () => `${operatorName} ${key}: wanted ${JSON.stringify(wants)}, request has ${show(got)}`;

    if (operator === 'Null') {
      const absent = got === undefined || (Array.isArray(got) && got.length === 0);
      if (String(absent) !== (wants[0] ?? '').toLowerCase()) return why();
      continue;
    }
    const rule = COMPARE[operator];
    if (!rule) throw new Error(`iam-eval: condition operator ${operatorName} is not modelled`);
    const values = got === undefined ? [] : list(got as string | readonly string[]).map(String);
    const hit = (value: string) => wants.some((w) => rule.compare(w, value));

    if (quantifier === 'ForAllValues') {
      // An absent or empty key makes ForAllValues true: every one of no values matched.
      const ok = rule.negated ? values.every((v) => !hit(v)) : values.every(hit);
      if (!ok) return why();
      continue;
    }
    if (quantifier === 'ForAnyValue') {
      const ok = rule.negated ? values.some((v) => !hit(v)) : values.some(hit);
      if (!ok) return why();
      continue;
    }
    if (got === undefined) {
      if (ifExists || rule.negated) continue;
      return why();
    }
    if (Array.isArray(got)) {
      throw new Error(`iam-eval: ${key} is multivalued; a policy must test it with ForAnyValue/ForAllValues`);
    }
    const single = String(got);
    if (rule.negated ? hit(single) : !hit(single)) return why();
  }
  return undefined;
};

const statementName = (s: PolicyStatement, index: number) => s.Sid ?? `statement #${index + 1}`;

/** What the statement says about the request: not applicable, or applicable with a failed condition. */
const applies = (s: PolicyStatement, request: AuthRequest): { applies: boolean; failed?: string } => {
  const actionOk =
    s.Action !== undefined
      ? actionMatches(list(s.Action), request.action)
      : !actionMatches(list(s.NotAction), request.action);
  if (!actionOk) return { applies: false };
  const resourceOk =
    s.Resource !== undefined
      ? resourceMatches(list(s.Resource), request.resource)
      : !resourceMatches(list(s.NotResource), request.resource);
  if (!resourceOk) return { applies: false };
  for (const [operator, block] of Object.entries(s.Condition ?? {})) {
    const failed = conditionFails(operator, block, request.context);
    if (failed) return { applies: false, failed };
  }
  return { applies: true };
};

export const evaluate = (statements: readonly PolicyStatement[], request: AuthRequest): Decision => {
  const reasons: string[] = [];
  let allowedBy: string | undefined;
  for (const [i, s] of statements.entries()) {
    const result = applies(s, request);
    if (result.failed) reasons.push(`${statementName(s, i)}: ${result.failed}`);
    if (!result.applies) continue;
    if (s.Effect === 'Deny')
      return { allowed: false, decidedBy: statementName(s, i), reasons: ['explicit deny'] };
    allowedBy ??= statementName(s, i);
  }
  if (allowedBy !== undefined) return { allowed: true, decidedBy: allowedBy, reasons: [] };
  return {
    allowed: false,
    reasons: reasons.length > 0 ? reasons : ['no statement allows this action on this resource'],
  };
};
