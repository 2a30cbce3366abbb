/** A promise with its resolve and reject at hand, for a value that another task will supply. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (error: unknown) => void;
}

/**
 * Its rejection is handled from the start: awaited by whoever needs the value, or by nobody once
 * something else failed, it never becomes an unhandled rejection.
 */
export function deferred<T>(): Deferred<T> {
  let resolve!: Deferred<T>['resolve'];
  let reject!: Deferred<T>['reject'];
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}
