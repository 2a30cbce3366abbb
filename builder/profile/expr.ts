/**
 * `{…}` interpolation in pattern groups: `otg{k}`, `10.0.{k+10}.2/24`, `10.1.{k/250}.{k%250+2}`.
 * Expressions are integer arithmetic over `k` (+ - * / %, / rounding down, and parentheses) —
 * data, not code, so nothing else can run.
 */
export class ExpressionError extends Error {}

export function evaluate(expression: string, k: number): number {
  const tokens = expression.match(/\d+|k|[-+*/%()]|\S/g) ?? [];
  let position = 0;
  const peek = () => tokens[position];
  const take = () => tokens[position++];
  const primary = (): number => {
    const token = take();
    if (token === 'k') return k;
    if (token !== undefined && /^\d+$/.test(token)) return Number(token);
    if (token === '(') {
      const value = sum();
      if (take() !== ')') throw new ExpressionError(`missing ")" in {${expression}}`);
      return value;
    }
    if (token === '-') return -primary();
    throw new ExpressionError(
      `unexpected "${token ?? 'end'}" in {${expression}}; use k, whole numbers, + - * / % and parentheses`,
    );
  };
  const product = (): number => {
    let value = primary();
    while (peek() === '*' || peek() === '/' || peek() === '%') {
      const operator = take();
      const right = primary();
      if (operator !== '*' && right === 0) throw new ExpressionError(`division by zero in {${expression}}`);
      value = operator === '*' ? value * right : operator === '/' ? Math.floor(value / right) : value % right;
    }
    return value;
  };
  const sum = (): number => {
    let value = product();
    while (peek() === '+' || peek() === '-') value = take() === '+' ? value + product() : value - product();
    return value;
  };
  const value = sum();
  if (position !== tokens.length) throw new ExpressionError(`unexpected "${tokens[position]}" in {${expression}}`);
  return value;
}

/** Replace every `{expr}` in a string; strings without braces pass through unchanged. */
export function interpolate(template: string, k: number): string {
  return template.replace(/\{([^{}]*)\}/g, (_m, expression: string) => String(evaluate(expression, k)));
}
