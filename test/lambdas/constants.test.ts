import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UNDERSTUDY_VERSION } from '../../lambdas/shared/constants';

describe('UNDERSTUDY_VERSION', () => {
  it('is the version in package.json, so the Terraform locks Understudy takes name the release that took them', () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
      version: string;
    };
    expect(UNDERSTUDY_VERSION).toBe(pkg.version);
  });
});
