'use strict'
// The package entry: adapts the native class to Oboto's legacy constructor
// `new CloudSync(eventBus, secretsManager)` and exposes `aiProxyStream` as an async
// generator. Everything else is the Rust implementation in `index.js` (generated).

const native = require('./index.js')

const { NativeCloudSync, loadCloudConfig } = native

function eventForwarder(eventBus) {
  if (!eventBus || typeof eventBus.emitTyped !== 'function') return null
  // Each event arrives as JSON text (one `JSON.parse` is cheaper than building the object
  // through N-API); the payload is a plain object.
  return (json) => {
    const event = JSON.parse(json)
    try {
      eventBus.emitTyped(event.type, event.payload)
    } catch (err) {
      // A throwing listener must not take the cloud client down with it.
      process.emitWarning(`oboto-cloud: a listener of ${event.type} threw: ${err && err.message}`)
    }
  }
}

function secretsBridge(secretsManager) {
  const sm = secretsManager
  if (!sm || typeof sm.get !== 'function' || typeof sm.set !== 'function' || typeof sm.delete !== 'function') {
    return [null, null, null]
  }
  return [
    async (name) => {
      const value = await sm.get(name)
      return typeof value === 'string' && value !== '' ? value : null
    },
    async (name, value) => {
      await sm.set(name, value, 'cloud', 'Oboto Cloud session (refresh token)')
    },
    async (name) => {
      await sm.delete(name)
    },
  ]
}

class CloudSync extends NativeCloudSync {
  /**
   * @param {import('./cloud-sync').EventBusLike | null} [eventBus]
   * @param {import('./cloud-sync').SecretsManagerLike | null} [secretsManager]
   */
  constructor(eventBus = null, secretsManager = null) {
    super(eventForwarder(eventBus), ...secretsBridge(secretsManager))
  }

  /**
   * Streams an AI proxy completion: yields each parsed SSE `data:` object and ends at
   * `[DONE]`; a stream that ends otherwise rejects. Leaving the loop early (break, throw or
   * `return()`) closes the connection.
   */
  async *aiProxyStream(model, messages, options = null) {
    // The addon calls `wake` when a `take()` that found nothing can take again. It holds only
    // `waiter`, never the stream, so an abandoned stream can be collected (which closes it).
    const waiter = { resolve: null }
    const wake = () => {
      const resolve = waiter.resolve
      waiter.resolve = null
      if (resolve) resolve()
    }
    const stream = await this.aiProxyStreamOpen(model, messages, options, wake)
    try {
      for (;;) {
        // Everything buffered, as one JSON array: one crossing and one parse per pull.
        const chunks = stream.take()
        if (chunks === null) return
        if (chunks === '') {
          await new Promise((resolve) => (waiter.resolve = resolve))
          continue
        }
        for (const chunk of JSON.parse(chunks)) yield chunk
      }
    } finally {
      stream.cancel()
    }
  }
}

module.exports = { ...native, CloudSync, loadCloudConfig }
