import { createClients } from '../../../lambdas/shared/clients';
import { Sandbox } from '../../../sandbox/index';

// Its own file: the plugin is registered once per process (per jest file), and this test needs a
// process in which a client exists before any sandbox started.
describe('Sandbox client plugin', () => {
  it('refuses to start when an SDK client was built before it, since that client would call real AWS', async () => {
    createClients();

    await expect(Sandbox.start()).rejects.toThrow(/built before the sandbox was started/);
  });
});
