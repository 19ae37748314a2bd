'use strict'
/* eslint-disable @typescript-eslint/no-require-imports -- CommonJS on purpose: it stands in for undici's CommonJS index */
// What mesh uses of undici (Client, Agent, request), for the bundle only (scripts/bundle.mjs
// maps `undici` here). undici's index loads every dispatcher, the mock agents, fetch, WebSocket
// and the cache stores: ≈ 40 ms of `mesh status` for nothing. Built as undici's own index.js
// builds these three (undici is pinned; bump it and the lab tests run through this file).
const Dispatcher = require('undici/lib/dispatcher/dispatcher')
const Client = require('undici/lib/dispatcher/client')
const Agent = require('undici/lib/dispatcher/agent')
const api = require('undici/lib/api')
const util = require('undici/lib/core/util')
const {InvalidArgumentError} = require('undici/lib/core/errors')
const {getGlobalDispatcher} = require('undici/lib/global')

Object.assign(Dispatcher.prototype, api)

// undici's makeDispatcher(api.request), as in its index.js.
function request(url, opts, handler) {
  if (typeof opts === 'function') {
    handler = opts
    opts = null
  }
  if (!url || (typeof url !== 'string' && typeof url !== 'object' && !(url instanceof URL)))
    throw new InvalidArgumentError('invalid url')
  if (opts != null && typeof opts !== 'object') throw new InvalidArgumentError('invalid opts')
  if (opts && opts.path != null) {
    if (typeof opts.path !== 'string') throw new InvalidArgumentError('invalid opts.path')
    const path = opts.path.startsWith('/') ? opts.path : `/${opts.path}`
    url = new URL(util.parseOrigin(url).origin + path)
  } else {
    if (!opts) opts = typeof url === 'object' ? url : {}
    url = util.parseURL(url)
  }
  const {agent, dispatcher = getGlobalDispatcher(), ...restOpts} = opts
  if (agent) throw new InvalidArgumentError('unsupported opts.agent. Did you mean opts.client?')
  return api.request.call(
    dispatcher,
    {
      ...restOpts,
      origin: url.origin,
      path: url.search ? `${url.pathname}${url.search}` : url.pathname,
      method: opts.method || (opts.body ? 'PUT' : 'GET'),
    },
    handler,
  )
}

module.exports = {Dispatcher, Client, Agent, request}
