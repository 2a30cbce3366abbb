/**
 * Templates render in an isolated Handlebars environment with `noEscape` (HTML escaping corrupts
 * config files and shell scripts) and `strict` (a misspelt variable is an error, not an empty
 * string). Helpers: shellQuote, join, add, pad.
 */
import Handlebars from 'handlebars';
import { shellQuote } from '../text/shell.js';

const env = Handlebars.create();

env.registerHelper('shellQuote', (value: unknown) => shellQuote(value));
env.registerHelper('join', (list: unknown, separator: unknown) =>
  Array.isArray(list) ? list.join(typeof separator === 'string' ? separator : ' ') : '',
);
env.registerHelper('add', (a: unknown, b: unknown) => Number(a) + Number(b));
env.registerHelper('pad', (value: unknown, width: unknown) => String(value).padStart(Number(width), '0'));

const cache = new Map<string, HandlebarsTemplateDelegate>();

export function render(template: string, context: object): string {
  let compiled = cache.get(template);
  if (!compiled) {
    compiled = env.compile(template, { noEscape: true, strict: true });
    cache.set(template, compiled);
  }
  return compiled(context);
}
