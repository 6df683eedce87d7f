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
    for (const rule of this.rules) {
      if (rule.bus !== bus || !matchesPattern(rule.pattern, event)) continue;
      // Each target gets its own copy: a target mutating the event must not affect another.
      const copy = structuredClone(event);
      this.ctx.spawn(
        () => rule.target(copy),
        (error) => this.targetErrors.push({ bus, event: copy, error }),
      );
    }
    return { EventId: event.id };
  }

  readonly actions = {
    PutEvents: (input: PutEventsCommandInput) => this.put(input.Entries ?? []),
  };
}
