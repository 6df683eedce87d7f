import { createHash } from 'node:crypto';

/**
 * Resource ids that look like AWS's (prefix + hex) but are deterministic per sandbox, so a demo run
 * and its printed timeline can be compared from one run to the next.
 */
export class IdFactory {
  private readonly counters = new Map<string, number>();

  constructor(private readonly seed: string) {}

  private next(prefix: string): number {
    const n = (this.counters.get(prefix) ?? 0) + 1;
    this.counters.set(prefix, n);
    return n;
  }

  /** `i-` + 17 hex, `vol-` + 17 hex, `eipalloc-` + 17 hex ... */
  hex(prefix: string, length = 17): string {
    const n = this.next(prefix);
    const digest = createHash('sha256').update(`${this.seed}/${prefix}/${n}`).digest('hex');
    return `${prefix}-${digest.slice(0, length)}`;
  }

  /** A UUID-shaped id (SSM command ids, EventBridge event ids, SNS message ids). */
  uuid(kind: string): string {
    const h = createHash('sha256')
      .update(`${this.seed}/${kind}/${this.next(kind)}`)
      .digest('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
  }

  /** Sequential addresses in a /24 (TEST-NET ranges for public ones). */
  address(base: string): string {
    const n = this.next(`ip:${base}`);
    return `${base}.${(n % 250) + 4}`;
  }
}
