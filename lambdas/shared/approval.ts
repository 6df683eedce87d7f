import { z } from 'zod';

/**
 * The approval gate's request as the run parks it (a SecureString parameter per target) and as
 * `understudy approve|reject` reads it. Kept apart from the step's code so the CLI imports no
 * workflow-side AWS calls.
 */
export const ApprovalRecordSchema = z.object({
  /** The task token: a credential for the execution, never logged or printed. */
  token: z.string().min(1),
  target: z.string(),
  execution: z.string(),
  candidate: z.string(),
  requestedAt: z.string(),
});
export type ApprovalRecord = z.infer<typeof ApprovalRecordSchema>;

/** The commands the announcement gives the approver, ready to paste. */
export const approvalCommands = (target: string): { approve: string; reject: string } => ({
  approve: `npx understudy approve ${target}`,
  reject: `npx understudy reject ${target} --reason "..."`,
});
