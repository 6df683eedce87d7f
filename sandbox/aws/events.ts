import type { PutEventsCommandInput, PutEventsResultEntry } from '@aws-sdk/client-eventbridge';
import { iso, type ModelContext } from './context';
import { errorsFor } from './errors';
import { matchesPattern } from './pattern';

const fail = errorsFor('events');

export type RuleTarget = (event: unknown) => Promise<unknown>;
interface Rule {
  readonly bus: string;
  readonly pattern: Record<string, unknown>;
  readonly target: RuleTarget;
}
export interface BusEvent {
  readonly version: '0';
  readonly id: string;
  readonly 'detail-type': string;
  readonly source: string;
  readonly account: string;
  readonly time: string;
  readonly region: string;
  readonly resources: string[];
  readonly detail: unknown;
}
export interface PutEntry {
  readonly Source?: string;
  readonly DetailType?: string;
  readonly Detail?: string;
  readonly EventBusName?: string;
  readonly Resources?: string[];
  readonly Time?: Date;
}

/** `arn:aws:events:<region>:<account>:event-bus/<name>` and plain names name the same bus. */
const busName = (nameOrArn: string | undefined): string => {
  if (!nameOrArn) return 'default';
  const arn = /^arn:aws[\w-]*:events:[^:]*:[^:]*:event-bus\/(.+)$/.exec(nameOrArn);
  return arn?.[1] ?? nameOrArn;
};

/**
 * EventBridge: PutEvents validates each entry on its own (FailedEntryCount, per-entry ErrorCode) and
 * delivers accepted events to matching rules asynchronously, as the real bus does: PutEvents returns
 * before any target ran.
 */
export class EventsModel {
  private readonly rules: Rule[] = [];
  /** Targets that threw: EventBridge would retry and then drop; `Sandbox.stop()` throws them. */
  readonly targetErrors: { bus: string; event: BusEvent; error: unknown }[] = [];

  constructor(private readonly ctx: ModelContext) {}

  addRule(bus: string, pattern: Record<string, unknown>, target: RuleTarget): void {
    this.rules.push({ bus: busName(bus), pattern, target });
  }

  /**
   * An event an AWS service sends to the account's default bus (aws.ssm, aws.imagebuilder...): not
   * through PutEvents, which refuses `aws.` sources from callers, and never failing.
   */
  deliverServiceEvent(event: {
    source: string;
    detailType: string;
    detail: Record<string, unknown>;
    resources?: string[];
  }): BusEvent {
    const delivered: BusEvent = {
      version: '0',
      id: this.ctx.ids.uuid('service-event'),
      'detail-type': event.detailType,
      source: event.source,
      account: this.ctx.accountId,
      time: iso(this.ctx.clock.now()).replace(/\.\d{3}Z$/, 'Z'),
      region: this.ctx.region,
      resources: event.resources ?? [],
      detail: event.detail,
    };
    this.dispatch('default', delivered);
    return delivered;
  }

  private dispatch(bus: string, event: BusEvent): void {
    for (const rule of this.rules) {
      if (rule.bus !== bus || !matchesPattern(rule.pattern, event)) continue;
      // Each target gets its own copy: a target mutating the event must not affect another.
      const copy = structuredClone(event);
      this.ctx.spawn(
        () => rule.target(copy),
        (error) => this.targetErrors.push({ bus, event: copy, error }),
      );
    }
  }

  /** Entry point for both the API and the simulated instances' agents. */
  put(entries: readonly PutEntry[]): { FailedEntryCount: number; Entries: PutEventsResultEntry[] } {
    if (entries.length === 0 || entries.length > 10) {
      throw fail(
        'ValidationException',
        `1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and 10`,
      );
    }
    const results: PutEventsResultEntry[] = entries.map((entry) => this.accept(entry));
    return { FailedEntryCount: results.filter((r) => r.ErrorCode).length, Entries: results };
  }

  private accept(entry: PutEntry): PutEventsResultEntry {
    if (!entry.Source || !entry.DetailType || entry.Detail === undefined) {
      const missing = !entry.Source ? 'Source' : !entry.DetailType ? 'DetailType' : 'Detail';
      return {
        ErrorCode: 'InvalidArgument',
        ErrorMessage: `Parameter ${missing} is not valid. Reason: ${missing} is a required argument.`,
      };
    }
    let detail: unknown;
    try {
      detail = JSON.parse(entry.Detail);
    } catch {
      return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' };
    }
    if (typeof detail !== 'object' || detail === null || Array.isArray(detail)) {
      return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' };
    }
    const bus = busName(entry.EventBusName);
    const event: BusEvent = {
      version: '0',
      id: this.ctx.ids.uuid('event'),
      'detail-type': entry.DetailType,
      source: entry.Source,
      account: this.ctx.accountId,
      time: iso(entry.Time?.getTime() ?? this.ctx.clock.now()).replace(/\.\d{3}Z$/, 'Z'),
      region: this.ctx.region,
      resources: entry.Resources ?? [],
      detail,
    };
    this.dispatch(bus, event);
    return { EventId: event.id };
  }

  readonly actions = {
    PutEvents: (input: PutEventsCommandInput) => this.put(input.Entries ?? []),
  };
}

/** A rule target's `InputTransformer`, as the template holds it. */
export interface InputTransformer {
  readonly InputPathsMap?: Readonly<Record<string, string>>;
  readonly InputTemplate: string;
}

/** `$.detail.name`, `$.resources[0]`: the paths an input transformer may read. */
const readPath = (event: unknown, path: string): unknown => {
  if (!path.startsWith('$')) throw new Error(`input path ${path} does not start with $`);
  let value: unknown = event;
  for (const [, key, index] of path.slice(1).matchAll(/\.([^.[\]]+)|\[(\d+)\]/g)) {
    if (value === null || typeof value !== 'object') return undefined;
    value =
      index !== undefined
        ? (value as unknown[])[Number(index)]
        : (value as Record<string, unknown>)[key ?? ''];
  }
  return value;
};

/**
 * What a rule delivers to its target through an input transformer: each `<name>` of the template is
 * replaced by the value its path reads from the event, as JSON, or as the bare text inside quotes
 * (EventBridge's rule for `"<name>"`); a path that reads nothing gives null (empty text inside quotes).
 */
export const applyInputTransformer = (transformer: InputTransformer, event: unknown): unknown => {
  const paths = transformer.InputPathsMap ?? {};
  const text = transformer.InputTemplate.replace(
    /("?)<([A-Za-z0-9_.-]+)>("?)/g,
    (whole, open, name, close) => {
      const path = paths[name as string];
      if (path === undefined) return whole;
      const value = readPath(event, path);
      if (open && close) {
        const bare =
          value === undefined || value === null
            ? ''
            : typeof value === 'string'
              ? value
              : JSON.stringify(value);
        return JSON.stringify(bare);
      }
      return `${open}${value === undefined ? 'null' : JSON.stringify(value)}${close}`;
    },
  );
  return JSON.parse(text);
};
