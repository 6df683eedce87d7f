import { isRawNumber } from './json';
import type { AttributeChange, ReconcileReport } from './reconcile';

/**
 * The human form of a reconcile report (the CLI's default output, and the body of the workflow's
 * notification). Sensitive values never appear: reconcile already replaced them with `(sensitive)`.
 */

const show = (change: AttributeChange, value: unknown): string => {
  if (change.sensitive) return '(sensitive)';
  if (isRawNumber(value)) return value.rawJSON;
  return JSON.stringify(value) ?? 'null';
};

/** Groups changes by the object they belong to, in the order they were found. */
const byAddress = (changes: readonly AttributeChange[]): Map<string, AttributeChange[]> => {
  const groups = new Map<string, AttributeChange[]>();
  for (const change of changes) {
    const group = groups.get(change.address);
    if (group) group.push(change);
    else groups.set(change.address, [change]);
  }
  return groups;
};

export const formatReconcileReport = (report: ReconcileReport): string => {
  const lines: string[] = [];
  if (report.alreadyReconciled) {
    lines.push(
      `${report.instanceAddress} already describes ${report.newInstanceId}: nothing to change (serial ${report.serialBefore} kept).`,
    );
  } else if (report.changes.length === 0) {
    lines.push(`${report.instanceAddress}: nothing to change (serial ${report.serialBefore} kept).`);
  } else {
    lines.push(
      `${report.instanceAddress}: ${report.oldInstanceId} -> ${report.newInstanceId} (serial ${report.serialBefore} -> ${report.serialAfter})`,
    );
    lines.push('', 'Changed:');
    for (const [address, changes] of byAddress(report.changes)) {
      lines.push(`  ${address}`);
      for (const change of changes) {
        lines.push(
          change.sensitive
            ? `    ${change.path}: (sensitive)`
            : `    ${change.path}: ${show(change, change.before)} -> ${show(change, change.after)}`,
        );
        if (change.path === 'status' && address === report.instanceAddress) {
          lines.push(
            `    (no longer ${show(change, change.before)}: ${report.newInstanceId} is the replacement for ${report.oldInstanceId}, so the next apply keeps it)`,
          );
        }
      }
    }
  }
  if (report.stillMentioning.length > 0) {
    const named = report.oldValues.length > 0 ? report.oldValues.join(', ') : report.oldInstanceId;
    lines.push('', `Still mentioning the old instance (${named}); the next terraform apply updates them:`);
    for (const mention of report.stillMentioning) {
      lines.push(`  ${mention.address}: ${mention.paths.join(', ')}`);
    }
  }
  return `${lines.join('\n')}\n`;
};
