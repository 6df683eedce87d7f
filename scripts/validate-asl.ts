// Validates every state machine definition in statemachine/ with asl-validator (JSONPath, placeholders allowed).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import aslValidator from 'asl-validator';

const dir = join(__dirname, '..', 'statemachine');
let failed = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith('.asl.json'))) {
  const definition = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  const { isValid, errorsText } = aslValidator(definition, { checkArn: true, checkPaths: true });
  console.log(
    `${isValid ? 'valid  ' : 'INVALID'} statemachine/${file}${isValid ? '' : `\n  ${errorsText('\n  ')}`}`,
  );
  if (!isValid) failed += 1;
}
process.exit(failed === 0 ? 0 : 1);
