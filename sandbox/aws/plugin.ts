import type {
  FinalizeHandler,
  FinalizeHandlerArguments,
  FinalizeRequestMiddleware,
  HandlerExecutionContext,
  RelativeMiddlewareOptions,
} from '@smithy/types';
import {
  addClientPlugin,
  builtClientCount,
  type ClientPlugin,
  type PluggableClient,
  type ServiceName,
} from '../../lambdas/shared/clients';

/**
 * The one client plugin: every SDK client built by lambdas/shared/clients.ts gets a middleware that
 * answers each command from whichever sandbox is current. Both the plugin and "current" live on
 * globalThis (registered symbols), so bundled copies of this module and several sandboxes started one
 * after another in a jest file all meet the same plugin and the same current sandbox.
 *
 * The middleware sits right after the SDK's signing (itself after the retry middleware), where the
 * request would go on the wire: the command is serialized and signed as for AWS, and the client's own retries (maxAttempts, adaptive backoff on
 * throttling) happen as they would against AWS, their delays on the virtual clock.
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

/** What the plugin touches on a client (the shared type erases the SDK's generics). */
interface SdkClient {
  readonly middlewareStack: {
    addRelativeTo(
      middleware: FinalizeRequestMiddleware<object, object>,
      options: RelativeMiddlewareOptions,
    ): void;
  };
  readonly config: { credentials?: unknown };
}

// The SDK resolves an identity before it serializes: without these it would walk the default credential
// chain (files, SSO, instance metadata) on every machine. Presigned S3 URLs are signed with them, and the
// sandbox's S3 endpoint (s3-http.ts) verifies those signatures with the same secret.
export const SANDBOX_CREDENTIALS = {
  accessKeyId: 'ASIASANDBOXEXAMPLE',
  secretAccessKey: 'sandbox',
  sessionToken: 'sandbox',
};

const middlewareFor =
  (service: ServiceName): FinalizeRequestMiddleware<object, object> =>
  (_next: FinalizeHandler<object, object>, context: HandlerExecutionContext) =>
  async (args: FinalizeHandlerArguments<object>) => {
    const router = currentSandbox();
    const action = String(context.commandName ?? '').replace(/Command$/, '');
    if (!router) {
      throw new Error(
        `Understudy sandbox: ${service}:${action} was called but no sandbox is running (it was stopped, or never started in this process)`,
      );
    }
    const output = await router.dispatch(service, action, args.input as Record<string, unknown>);
    return {
      output: { ...output, $metadata: { httpStatusCode: 200 } },
      response: {},
    };
  };

const plugin: ClientPlugin = (pluggable: PluggableClient, service: ServiceName) => {
  const client = pluggable as unknown as SdkClient;
  client.middlewareStack.addRelativeTo(middlewareFor(service), {
    // After signing, where the request would go on the wire: a presigner's intercept (placed before
    // signing) then returns its URL without the command reaching the sandbox.
    relation: 'after',
    toMiddleware: 'httpSigningMiddleware',
    name: 'understudySandbox',
    override: true,
  });
  client.config.credentials = async () => SANDBOX_CREDENTIALS;
};

/**
 * Registers the plugin once per process. A client built before that would not be routed (it would talk
 * to the real AWS account of whatever credentials the machine has), so that is refused.
 */
export const installSandboxPlugin = (): void => {
  const host = globalThis as Host;
  if (!host[PLUGIN]) {
    const built = builtClientCount();
    if (built > 0) {
      throw new Error(
        `Understudy sandbox: ${built} AWS SDK client(s) were built before the sandbox was started; they would call real AWS. Start the sandbox before the first clients() call.`,
      );
    }
    host[PLUGIN] = plugin;
  }
  addClientPlugin(host[PLUGIN]);
};
