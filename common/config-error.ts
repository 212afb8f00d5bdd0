/** Bad configuration, whichever part finds it (the environment, the YAML, a kubeconfig loaded late). */

/** Bad configuration: the daemon exits with code 2 and prints this message, one line. */
export class ConfigError extends Error {
  static readonly code = 'ERR_CONFIG'
  override name = 'ConfigError'
  /**
   * @param key the environment variable or YAML key path (`servers[0].port`)
   * @param value what was given (omitted for secrets)
   * @param expected what would have been accepted
   */
  constructor (readonly key: string, readonly value: string | undefined, readonly expected: string, options?: ErrorOptions) {
    super(`${key}${value === undefined ? '' : `=${JSON.stringify(value)}`}: ${expected}`, options)
  }
}
