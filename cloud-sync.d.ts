// Types of the package entry. The native class and every shape live in the generated
// `index.d.ts`; this adds the legacy constructor and the streaming generator.
import { NativeCloudSync, type AiProxyOptions, type ChatMessage, type ChatCompletionChunk } from './index'

export * from './index'

/** What Oboto passes as `eventBus`: an EventEmitter with `emitTyped`. */
export interface EventBusLike {
  emitTyped(name: string, payload: Record<string, unknown>): unknown
}

/** What Oboto passes as `secretsManager`. */
export interface SecretsManagerLike {
  get(name: string): string | undefined
  set(name: string, value: string, category?: string, description?: string): Promise<unknown>
  delete(name: string): Promise<unknown>
}

export declare class CloudSync extends NativeCloudSync {
  constructor(eventBus?: EventBusLike | null, secretsManager?: SecretsManagerLike | null)
  /**
   * Streams an AI-proxy completion: each parsed SSE `data:` object, ending at `[DONE]`.
   * Leaving the loop early cancels the request.
   */
  aiProxyStream(
    model: string,
    messages: ChatMessage[],
    options?: AiProxyOptions | null,
  ): AsyncGenerator<ChatCompletionChunk, void, undefined>
}
