import type {
  AttributeValue,
  DeleteItemCommandInput,
  GetItemCommandInput,
  PutItemCommandInput,
  UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import type { ModelContext } from './context';
import { errorsFor } from './errors';

const fail = errorsFor('dynamodb');

type Item = Record<string, AttributeValue>;

/**
 * How long (virtual ms) an eventually consistent read may still see the item as it was before the last
 * write. DynamoDB documents no bound; "usually within a second" is what its guide says, so a second.
 */
export const DynamoTiming = { staleReadMs: 1000 };

interface StoredEntry {
  current: Item | undefined;
  previous: Item | undefined;
  changedAt: number;
}

interface Table {
  readonly hashKey: string;
  readonly hashKeyType: 'S' | 'N' | 'B';
  readonly items: Map<string, StoredEntry>;
}

const validation = (message: string) => fail('ValidationException', message);

// ---------------------------------------------------------------------------------------------------
// Expressions: the subset Terraform's S3 backend and Understudy use (conditions with
// attribute_exists / attribute_not_exists / = / <> joined by AND, SET / REMOVE updates, projections).
// Anything else is refused as a ValidationException that says the sandbox does not model it, so a
// test can never pass on an expression AWS would read differently.
// ---------------------------------------------------------------------------------------------------

type Token =
  | { kind: 'name'; text: string }
  | { kind: 'placeholder'; text: string }
  | { kind: 'value'; text: string }
  | { kind: 'punct'; text: string };

const tokenize = (expression: string, what: string): Token[] => {
  const tokens: Token[] = [];
  const pattern = /\s*(?:(#[A-Za-z0-9_]+)|(:[A-Za-z0-9_]+)|([A-Za-z_][A-Za-z0-9_]*)|(<>|[=(),]))/y;
  let index = 0;
  while (index < expression.length) {
    if (/^\s*$/.test(expression.slice(index))) break;
    pattern.lastIndex = index;
    const match = pattern.exec(expression);
    if (!match) {
      const near = expression.slice(index).trim().slice(0, 10);
      throw validation(`Invalid ${what}: Syntax error; token: "${near.charAt(0)}", near: "${near}"`);
    }
    index = pattern.lastIndex;
    if (match[1]) tokens.push({ kind: 'placeholder', text: match[1] });
    else if (match[2]) tokens.push({ kind: 'value', text: match[2] });
    else if (match[3]) tokens.push({ kind: 'name', text: match[3] });
    else tokens.push({ kind: 'punct', text: match[4] ?? '' });
  }
  return tokens;
};

interface ExpressionScope {
  readonly names: Record<string, string>;
  readonly values: Record<string, AttributeValue>;
  readonly usedNames: Set<string>;
  readonly usedValues: Set<string>;
}

const scopeOf = (input: {
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: Record<string, AttributeValue>;
}): ExpressionScope => ({
  names: input.ExpressionAttributeNames ?? {},
  values: input.ExpressionAttributeValues ?? {},
  usedNames: new Set(),
  usedValues: new Set(),
});

/** AWS refuses placeholders that no expression of the request uses. */
const checkAllUsed = (scope: ExpressionScope): void => {
  const unusedNames = Object.keys(scope.names).filter((name) => !scope.usedNames.has(name));
  if (unusedNames.length > 0) {
    throw validation(
      `Value provided in ExpressionAttributeNames unused in expressions: keys: {${unusedNames.join(', ')}}`,
    );
  }
  const unusedValues = Object.keys(scope.values).filter((value) => !scope.usedValues.has(value));
  if (unusedValues.length > 0) {
    throw validation(
      `Value provided in ExpressionAttributeValues unused in expressions: keys: {${unusedValues.join(', ')}}`,
    );
  }
};

type Operand = { kind: 'path'; name: string } | { kind: 'value'; value: AttributeValue };
type Condition =
  | { kind: 'exists'; name: string; negate: boolean }
  | { kind: 'compare'; op: '=' | '<>'; left: Operand; right: Operand }
  | { kind: 'and'; parts: Condition[] };

class Parser {
  private at = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly scope: ExpressionScope,
    private readonly what: string,
  ) {}

  get done(): boolean {
    return this.at >= this.tokens.length;
  }
  peek(): Token | undefined {
    return this.tokens[this.at];
  }
  next(): Token {
    const token = this.tokens[this.at++];
    if (!token) throw validation(`Invalid ${this.what}: Syntax error; token: "<EOF>", near: ""`);
    return token;
  }
  expect(text: string): void {
    const token = this.next();
    if (token.text !== text) this.syntax(token);
  }
  syntax(token: Token): never {
    throw validation(`Invalid ${this.what}: Syntax error; token: "${token.text}", near: "${token.text}"`);
  }
  unsupported(token: Token): never {
    throw validation(
      `Invalid ${this.what}: the sandbox does not model "${token.text}" (supported: attribute_exists, attribute_not_exists, =, <>, AND, SET, REMOVE)`,
    );
  }

  path(): string {
    const token = this.next();
    if (token.kind === 'placeholder') {
      const name = this.scope.names[token.text];
      if (name === undefined) {
        throw validation(
          `Invalid ${this.what}: An expression attribute name used in the document path is not defined; attribute name: ${token.text}`,
        );
      }
      this.scope.usedNames.add(token.text);
      return name;
    }
    if (token.kind === 'name') return token.text;
    return this.syntax(token);
  }

  operand(): Operand {
    const token = this.peek();
    if (token?.kind === 'value') {
      this.at++;
      const value = this.scope.values[token.text];
      if (value === undefined) {
        throw validation(
          `Invalid ${this.what}: An expression attribute value used in expression is not defined; attribute value: ${token.text}`,
        );
      }
      this.scope.usedValues.add(token.text);
      return { kind: 'value', value };
    }
    return { kind: 'path', name: this.path() };
  }

  condition(): Condition {
    const parts = [this.term()];
    while (!this.done) {
      const token = this.peek();
      if (token?.kind === 'name' && token.text.toUpperCase() === 'AND') {
        this.at++;
        parts.push(this.term());
      } else if (token?.kind === 'name' && /^(OR|NOT|BETWEEN|IN)$/i.test(token.text)) {
        this.unsupported(token);
      } else break;
    }
    return parts.length === 1 && parts[0] ? parts[0] : { kind: 'and', parts };
  }

  private term(): Condition {
    const token = this.peek();
    if (!token) return this.syntax({ kind: 'punct', text: '<EOF>' });
    if (token.text === '(') {
      this.at++;
      const inner = this.condition();
      this.expect(')');
      return inner;
    }
    const following = this.tokens[this.at + 1];
    if (token.kind === 'name' && following?.text === '(') {
      const fn = token.text;
      if (fn !== 'attribute_exists' && fn !== 'attribute_not_exists') this.unsupported(token);
      this.at += 2;
      const name = this.path();
      this.expect(')');
      return { kind: 'exists', name, negate: fn === 'attribute_not_exists' };
    }
    const left = this.operand();
    const op = this.next();
    if (op.text !== '=' && op.text !== '<>') {
      if (op.kind === 'punct' || op.kind === 'name') this.unsupported(op);
      this.syntax(op);
    }
    const right = this.operand();
    return { kind: 'compare', op: op.text as '=' | '<>', left, right };
  }
}

const sameValue = (a: AttributeValue | undefined, b: AttributeValue | undefined): boolean => {
  if (a === undefined || b === undefined) return false;
  if (a.S !== undefined || b.S !== undefined) return a.S === b.S;
  if (a.N !== undefined || b.N !== undefined)
    return a.N !== undefined && b.N !== undefined && Number(a.N) === Number(b.N);
  if (a.B !== undefined || b.B !== undefined)
    return a.B !== undefined && b.B !== undefined && Buffer.from(a.B).equals(Buffer.from(b.B));
  if (a.BOOL !== undefined || b.BOOL !== undefined) return a.BOOL === b.BOOL;
  if (a.NULL !== undefined || b.NULL !== undefined) return a.NULL === b.NULL;
  return JSON.stringify(a) === JSON.stringify(b);
};

const evaluate = (condition: Condition, item: Item | undefined): boolean => {
  switch (condition.kind) {
    case 'exists': {
      const present = item?.[condition.name] !== undefined;
      return condition.negate ? !present : present;
    }
    case 'compare': {
      const resolve = (operand: Operand) => (operand.kind === 'value' ? operand.value : item?.[operand.name]);
      const left = resolve(condition.left);
      const right = resolve(condition.right);
      // A missing attribute compares unequal to everything, and `<>` is false on it too (DynamoDB).
      if (left === undefined || right === undefined) return false;
      return condition.op === '=' ? sameValue(left, right) : !sameValue(left, right);
    }
    case 'and':
      return condition.parts.every((part) => evaluate(part, item));
  }
};

const parseCondition = (expression: string | undefined, scope: ExpressionScope): Condition | undefined => {
  if (expression === undefined) return undefined;
  if (expression.trim() === '') {
    throw validation('Invalid ConditionExpression: The expression can not be empty;');
  }
  const parser = new Parser(tokenize(expression, 'ConditionExpression'), scope, 'ConditionExpression');
  const condition = parser.condition();
  const rest = parser.peek();
  if (rest) parser.syntax(rest);
  return condition;
};

type UpdateAction = { kind: 'set'; name: string; value: Operand } | { kind: 'remove'; name: string };

const parseUpdate = (expression: string, scope: ExpressionScope): UpdateAction[] => {
  const parser = new Parser(tokenize(expression, 'UpdateExpression'), scope, 'UpdateExpression');
  const actions: UpdateAction[] = [];
  while (!parser.done) {
    const clause = parser.next();
    const keyword = clause.kind === 'name' ? clause.text.toUpperCase() : '';
    if (keyword !== 'SET' && keyword !== 'REMOVE') {
      if (keyword === 'ADD' || keyword === 'DELETE') parser.unsupported(clause);
      parser.syntax(clause);
    }
    let more = true;
    while (more) {
      const name = parser.path();
      if (keyword === 'SET') {
        parser.expect('=');
        actions.push({ kind: 'set', name, value: parser.operand() });
      } else {
        actions.push({ kind: 'remove', name });
      }
      more = parser.peek()?.text === ',';
      if (more) parser.next();
    }
  }
  if (actions.length === 0) throw validation('Invalid UpdateExpression: The expression can not be empty;');
  return actions;
};

const parseProjection = (expression: string | undefined, scope: ExpressionScope): string[] | undefined => {
  if (expression === undefined) return undefined;
  const parser = new Parser(tokenize(expression, 'ProjectionExpression'), scope, 'ProjectionExpression');
  const names = [parser.path()];
  while (!parser.done) {
    parser.expect(',');
    names.push(parser.path());
  }
  return names;
};

const clone = (item: Item): Item => structuredClone(item);

/**
 * DynamoDB tables keyed by a hash key alone (what Terraform's lock table is), with conditional writes.
 * Writes and ConsistentRead reads see the latest item; an eventually consistent read within
 * `DynamoTiming.staleReadMs` of a write still sees the item as it was before it (so code that forgets
 * ConsistentRead is caught). Errors are the SDK's: ConditionalCheckFailedException (its modeled class,
 * with `Item` when ReturnValuesOnConditionCheckFailure is ALL_OLD), ResourceNotFoundException for a
 * table the account does not have, ValidationException for a bad key or expression.
 */
export class DynamoDbModel {
  private readonly tables = new Map<string, Table>();

  constructor(private readonly ctx: ModelContext) {}

  /** Seeding (a table the account has), not an API call. */
  createTable(name: string, hashKey: string, hashKeyType: 'S' | 'N' | 'B' = 'S'): void {
    if (!this.tables.has(name)) this.tables.set(name, { hashKey, hashKeyType, items: new Map() });
  }

  /** Direct, consistent read for harness assertions (no call record). */
  item(tableName: string, key: string): Item | undefined {
    const current = this.tables.get(tableName)?.items.get(key)?.current;
    return current && clone(current);
  }
  /** Direct write for harness seeding (no call record, no stale window). */
  seedItem(tableName: string, item: Item): void {
    const table = this.table(tableName);
    const key = this.keyOf(table, item, 'item');
    table.items.set(key, { current: clone(item), previous: clone(item), changedAt: -Infinity });
  }
  keys(tableName: string): string[] {
    const items = this.tables.get(tableName)?.items ?? new Map<string, StoredEntry>();
    return [...items.entries()]
      .filter(([, entry]) => entry.current !== undefined)
      .map(([key]) => key)
      .sort();
  }

  private table(name: string | undefined): Table {
    const table = name === undefined ? undefined : this.tables.get(name);
    if (!table) throw fail('ResourceNotFoundException', 'Requested resource not found');
    return table;
  }

  private keyOf(table: Table, key: Item | undefined, where: 'key' | 'item'): string {
    const value = key?.[table.hashKey];
    if (where === 'key') {
      const extra = Object.keys(key ?? {}).filter((name) => name !== table.hashKey);
      if (value === undefined || extra.length > 0) {
        throw validation('The provided key element does not match the schema');
      }
    } else if (value === undefined) {
      throw validation(
        `One or more parameter values were invalid: Missing the key ${table.hashKey} in the item`,
      );
    }
    const typed = value[table.hashKeyType];
    if (typed === undefined) {
      throw validation(
        where === 'key'
          ? 'The provided key element does not match the schema'
          : `One or more parameter values were invalid: Type mismatch for key ${table.hashKey} expected: ${table.hashKeyType} actual: ${Object.keys(value)[0] ?? 'none'}`,
      );
    }
    const text = typed instanceof Uint8Array ? Buffer.from(typed).toString('base64') : String(typed);
    if (text === '') {
      throw validation(
        `One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: ${table.hashKey}`,
      );
    }
    return `${table.hashKeyType}:${text}`;
  }

  private read(table: Table, key: string, consistent: boolean): Item | undefined {
    const entry = table.items.get(key);
    if (!entry) return undefined;
    const stale = !consistent && this.ctx.clock.now() - entry.changedAt < DynamoTiming.staleReadMs;
    return stale ? entry.previous : entry.current;
  }

  private write(table: Table, key: string, item: Item | undefined): void {
    const entry = table.items.get(key);
    table.items.set(key, {
      current: item,
      previous: entry?.current,
      changedAt: this.ctx.clock.now(),
    });
  }

  private checkCondition(
    condition: Condition | undefined,
    old: Item | undefined,
    returnOld: string | undefined,
  ): void {
    if (!condition || evaluate(condition, old)) return;
    const error = fail('ConditionalCheckFailedException', 'The conditional request failed');
    if (returnOld === 'ALL_OLD' && old) Object.assign(error, { Item: clone(old) });
    throw error;
  }

  readonly actions = {
    PutItem: (input: PutItemCommandInput) => {
      const table = this.table(input.TableName);
      const key = this.keyOf(table, input.Item, 'item');
      const scope = scopeOf(input);
      const condition = parseCondition(input.ConditionExpression, scope);
      checkAllUsed(scope);
      const old = table.items.get(key)?.current;
      this.checkCondition(condition, old, input.ReturnValuesOnConditionCheckFailure);
      this.write(table, key, clone(input.Item ?? {}));
      return input.ReturnValues === 'ALL_OLD' && old ? { Attributes: clone(old) } : {};
    },
    GetItem: (input: GetItemCommandInput) => {
      const table = this.table(input.TableName);
      const key = this.keyOf(table, input.Key, 'key');
      const scope = scopeOf(input);
      const projection = parseProjection(input.ProjectionExpression, scope);
      checkAllUsed(scope);
      const item = this.read(table, key, input.ConsistentRead === true);
      if (!item) return {};
      if (!projection) return { Item: clone(item) };
      const projected: Item = {};
      for (const name of projection) {
        const value = item[name];
        if (value !== undefined) projected[name] = structuredClone(value);
      }
      return { Item: projected };
    },
    DeleteItem: (input: DeleteItemCommandInput) => {
      const table = this.table(input.TableName);
      const key = this.keyOf(table, input.Key, 'key');
      const scope = scopeOf(input);
      const condition = parseCondition(input.ConditionExpression, scope);
      checkAllUsed(scope);
      const old = table.items.get(key)?.current;
      this.checkCondition(condition, old, input.ReturnValuesOnConditionCheckFailure);
      if (old) this.write(table, key, undefined);
      return input.ReturnValues === 'ALL_OLD' && old ? { Attributes: clone(old) } : {};
    },
    UpdateItem: (input: UpdateItemCommandInput) => {
      const table = this.table(input.TableName);
      const key = this.keyOf(table, input.Key, 'key');
      if (input.UpdateExpression === undefined) {
        throw validation('The sandbox models UpdateItem with an UpdateExpression only');
      }
      const scope = scopeOf(input);
      const actions = parseUpdate(input.UpdateExpression, scope);
      const condition = parseCondition(input.ConditionExpression, scope);
      checkAllUsed(scope);
      const old = table.items.get(key)?.current;
      this.checkCondition(condition, old, input.ReturnValuesOnConditionCheckFailure);
      const next: Item = old ? clone(old) : { ...(input.Key ?? {}) };
      const touched = new Set<string>();
      for (const action of actions) {
        if (action.name === table.hashKey) {
          throw validation(
            `One or more parameter values were invalid: Cannot update attribute ${action.name}. This attribute is part of the key`,
          );
        }
        touched.add(action.name);
        if (action.kind === 'remove') delete next[action.name];
        else {
          const value =
            action.value.kind === 'value' ? action.value.value : (old?.[action.value.name] ?? undefined);
          if (value === undefined) {
            throw validation(
              'The provided expression refers to an attribute that does not exist in the item',
            );
          }
          next[action.name] = structuredClone(value);
        }
      }
      this.write(table, key, next);
      const pick = (item: Item | undefined): Item => {
        const picked: Item = {};
        for (const name of touched) {
          const value = item?.[name];
          if (value !== undefined) picked[name] = structuredClone(value);
        }
        return picked;
      };
      switch (input.ReturnValues) {
        case 'ALL_NEW':
          return { Attributes: clone(next) };
        case 'ALL_OLD':
          return old ? { Attributes: clone(old) } : {};
        case 'UPDATED_NEW':
          return { Attributes: pick(next) };
        case 'UPDATED_OLD':
          return old ? { Attributes: pick(old) } : {};
        default:
          return {};
      }
    },
  };
}
