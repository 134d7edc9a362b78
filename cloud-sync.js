'use strict'
// The package entry: adapts the native class to Oboto's legacy constructor
// `new CloudSync(eventBus, secretsManager)` and exposes `aiProxyStream` as an async
// generator. Everything else is the Rust implementation in `index.js` (generated).

const native = require('./index.js')

const { NativeCloudSync, loadCloudConfig } = native

function eventForwarder(eventBus) {
  if (!eventBus || typeof eventBus.emitTyped !== 'function') return null
  return (event) => {
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
   * `[DONE]`. Leaving the loop early (break, throw or `return()`) closes the connection.
   */
  async *aiProxyStream(model, messages, options = null) {
    const stream = await this.aiProxyStreamOpen(model, messages, options, CAN_COMPILE)
    const shapes = [WHOLE]
    try {
      for (let batch = stream.firstBatch(); batch !== null; batch = await stream.nextBatch()) {
        for (const { id, source, slots } of batch.shapes) shapes[id] = compile(source, slots)
        const values = JSON.parse(batch.values)
        for (let i = 0; i < values.length; ) {
          const shape = shapes[values[i]]
          yield shape.build(values, i + 1)
          i += 1 + shape.slots
        }
      }
    } finally {
      stream.cancel()
    }
  }
}

// Chunk shapes (src/ai/shapes.rs): building a chunk from an object literal with its
// constants inlined is an order of magnitude cheaper than JSON.parse. The source holds only
// JSON tokens the addon validated, keys computed so that each is an own property exactly as
// JSON.parse makes it. Shape 0 is the chunk itself.
const WHOLE = { slots: 1, build: (s, i) => s[i] }

function compile(source, slots) {
  return { slots, build: new Function('s', 'i', `return ${source}`) }
}

// Without code generation (--disallow-code-generation-from-strings), every chunk travels whole.
const CAN_COMPILE = (() => {
  try {
    return new Function('return true')()
  } catch {
    return false
  }
})()

module.exports = { ...native, CloudSync, loadCloudConfig }
