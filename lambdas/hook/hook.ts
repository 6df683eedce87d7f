import { z } from 'zod';
import {
  type CandidateCommandClients,
  type CommandRef,
  SCRIPT_PREAMBLE,
  sendForInstance,
} from '../shared/commands';
import { invalidInput } from '../shared/errors';
import { LaunchResultSchema, RunStateSchema } from '../shared/schemas';

/** Where in the run a hook runs and on which box; the state machine names one per Task. */
export const HOOK_POINTS = ['beforeSwitch.newBox', 'afterSwitch.oldBox', 'afterSwitch.newBox'] as const;
export type HookPoint = (typeof HOOK_POINTS)[number];

export const HookInputSchema = z.object({
  hook: z.enum(HOOK_POINTS),
  state: RunStateSchema.extend({ launch: LaunchResultSchema }),
});
export type HookInput = z.infer<typeof HookInputSchema>;

/** SSM Comment word: one command per execution and hook point, so a retried Lambda never runs it twice. */
export const hookPurpose = (hook: HookPoint): string =>
  hook === 'beforeSwitch.newBox'
    ? 'hook-before-new'
    : hook === 'afterSwitch.oldBox'
      ? 'hook-after-old'
      : 'hook-after-new';

const linesFor = (state: HookInput['state'], hook: HookPoint): readonly string[] | undefined => {
  const hooks = state.run.target.hooks;
  if (hook === 'beforeSwitch.newBox') return hooks?.beforeSwitch?.newBox;
  return hook === 'afterSwitch.oldBox' ? hooks?.afterSwitch?.oldBox : hooks?.afterSwitch?.newBox;
};

/**
 * Sends the target's hook lines for `hook` to the box it names (the candidate, or the box the run
 * replaces). The lines are the operator's own shell, validated at config time as single printable
 * lines; they run as given after the common preamble, so the first failing line fails the hook.
 */
export const runHook = async (
  clients: CandidateCommandClients,
  input: HookInput,
): Promise<{ command: CommandRef; hook: HookPoint }> => {
  const { state, hook } = input;
  const lines = linesFor(state, hook);
  // The state machine skips a hook point without lines; reaching here without them is a wiring fault.
  if (lines === undefined || lines.length === 0) {
    throw invalidInput(`run.target.hooks.${hook}`, 'no hook commands are configured for this hook point');
  }
  const instanceId = hook === 'afterSwitch.oldBox' ? state.run.old.instanceId : state.launch.instanceId;
  const { command } = await sendForInstance(clients, state, instanceId, hookPurpose(hook), [
    ...SCRIPT_PREAMBLE,
    ...lines,
  ]);
  return { command, hook };
};
