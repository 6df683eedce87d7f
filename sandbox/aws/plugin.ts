import type {
  HandlerExecutionContext,
  InitializeHandler,
  InitializeHandlerArguments,
  InitializeMiddleware,
} from '@smithy/types';
import {
  addClientPlugin,
  type ClientPlugin,
  type PluggableClient,
  type ServiceName,
} from '../../lambdas/shared/clients';

/**
 * The one client plugin: every SDK client built by lambdas/shared/clients.ts gets a middleware that
 * answers each command from whichever sandbox is current. Both the plugin and "current" live on
 * globalThis (registered symbols), so bundled copies of this module and several sandboxes started one
 * after another in a jest file all meet the same plugin and the same current sandbox.
 */

export interface CommandRouter {
  dispatch(
    service: ServiceName,
    action: string,
    input: Record<string, unknown>,
  ): Promise<Record<string, unknown>>;
}

const CURRENT = Symbol.for('understudy.sandbox.current');
const PLUGIN = Symbol.for('understudy.sandbox.plugin');
type Host = { [CURRENT]?: CommandRouter; [PLUGIN]?: ClientPlugin };

export const setCurrentSandbox = (router: CommandRouter | undefined): void => {
  (globalThis as Host)[CURRENT] = router;
};
export const currentSandbox = (): CommandRouter | undefined => (globalThis as Host)[CURRENT];

/** What `middlewareStack.add` accepts for an initialize-step middleware (the shared type erases it). */
type AddInitialize = (
  middleware: InitializeMiddleware<object, object>,
  options: { step: 'initialize'; priority: 'high'; name: string; override: boolean },
) => void;

const middlewareFor =
  (service: ServiceName): InitializeMiddleware<object, object> =>
  (_next: InitializeHandler<object, object>, context: HandlerExecutionContext) =>
  async (args: InitializeHandlerArguments<object>) => {
    const router = currentSandbox();
    const action = String(context.commandName ?? '').replace(/Command$/, '');
    if (!router) {
      throw new Error(
        `Understudy sandbox: ${service}:${action} was called but no sandbox is running (it was stopped, or never started in this process)`,
      );
    }
    const output = await router.dispatch(service, action, args.input as Record<string, unknown>);
    return {
      output: { ...output, $metadata: { httpStatusCode: 200, attempts: 1, totalRetryDelay: 0 } },
      response: {},
    };
  };

const plugin: ClientPlugin = (client: PluggableClient, service: ServiceName) => {
  const add = client.middlewareStack.add as unknown as AddInitialize;
  add(middlewareFor(service), {
    step: 'initialize',
    priority: 'high',
    name: 'understudySandbox',
    override: true,
  });
};

/** Registers the plugin once per process; clients built before this call are not routed. */
export const installSandboxPlugin = (): void => {
  const host = globalThis as Host;
  host[PLUGIN] ??= plugin;
  addClientPlugin(host[PLUGIN]);
};
