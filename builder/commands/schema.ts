/** swarmcard schema — prints the profile JSON Schema (the source of profiles/schema.json). */
import { profileJsonSchema } from '../profile/schema.js';

export function schemaText(): string {
  return `${JSON.stringify(profileJsonSchema(), null, 2)}\n`;
}

export function schemaCommand(): void {
  process.stdout.write(schemaText());
}
