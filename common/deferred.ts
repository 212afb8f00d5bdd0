/** A promise with its `resolve` and `reject` at hand (what `Promise.withResolvers` gives from ES2024 on). */
export interface Deferred<T = void> {
  promise: Promise<T>
  resolve: (value: T) => void
  reject: (err: Error) => void
}

export function deferred<T = void> (): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (err: Error) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}
