/** The ws:// or wss:// URL of `path` on a controller's http(s) base URL (netmap, relay, events). */
export function wsUrl(base: string, path: string): URL {
  const url = new URL(path, base)
  if (url.protocol === 'http:') url.protocol = 'ws:'
  else if (url.protocol === 'https:') url.protocol = 'wss:'
  else throw new Error(`a controller URL must be http(s), not ${url.protocol}`)
  return url
}
