/* Shapes shared by the native binding and `cloud-sync.d.ts` (prepended to the generated index.d.ts). */

/** Every event, as the native layer delivers it. `payload` is always a plain object. */
export interface CloudEvent {
  type: CloudEventName
  payload: Record<string, unknown>
}

export type CloudEventName =
  | 'cloud:auth:logged-in'
  | 'cloud:auth:logged-out'
  | 'cloud:auth:error'
  | 'cloud:workspace:linked'
  | 'cloud:workspace:unlinked'
  | 'cloud:workspace:pushed'
  | 'cloud:workspace:pulled'
  | 'cloud:workspace:remote-update'
  | 'cloud:conversation:deleted'
  | 'cloud:message:received'
  | 'cloud:presence:updated'
  | 'cloud:realtime:connected'
  | 'cloud:realtime:disconnected'
  | 'cloud:sync:started'
  | 'cloud:sync:completed'
  | 'cloud:sync:conflict'
  | 'cloud:sync:error'
  | 'cloud:sync:resolved'
  | 'cloud:sync-status'
  | 'cloud:agent:invoked'
  | 'cloud:file:uploaded'
  | 'cloud:file:downloaded'
  | 'cloud:file:deleted'
  | 'cloud:file:progress'
  | 'cloud:usage-update'
  | `cloud:broadcast:${string}`

export type SyncState = 'idle' | 'syncing' | 'synced' | 'error' | 'conflict' | 'offline'

/** The auth part of the status; also the `cloud:auth:logged-in` payload. */
export interface AuthSnapshot {
  loggedIn: boolean
  user: { id: string; email: string | null } | null
  profile: { displayName: string | null; avatarUrl: string | null } | null
  org: { id: string; name: string; slug: string; tier: string } | null
  role: 'owner' | 'admin' | 'member' | 'viewer' | null
}

/** An error from any promise of this package. */
export interface CloudError extends Error {
  /** Stable: the server's code (`invalid_credentials`, `PGRST116`, `23505`…) or ours (`NETWORK_ERROR`, `NETWORK_TIMEOUT`, `INVALID_CONFIG`, `INVALID_ARGUMENT`, `NOT_LOGGED_IN`, `SESSION_ENDED`, `RATE_LIMITED`, `STREAM_ERROR`, `HTTP_<status>`…). */
  code: string
  /** HTTP status, for answers from the server. */
  status?: number
  /** The request URL, for HTTP and network failures. */
  url?: string
  /** Seconds to wait, when the server said so (`code` `RATE_LIMITED`). */
  retryAfter?: number
}

export interface AuthUser {
  id: string
  email: string | null
  phone?: string | null
  role?: string
  aud?: string
  app_metadata: Record<string, unknown>
  user_metadata: Record<string, unknown>
  created_at?: string
  last_sign_in_at?: string | null
  [key: string]: unknown
}

export interface ProfileRow {
  id: string
  display_name: string | null
  avatar_url: string | null
  bio: string | null
  preferences: Record<string, unknown>
  onboarding_completed: boolean
  last_active_at: string | null
  [key: string]: unknown
}

export interface OrganizationRow {
  id: string
  name: string
  slug: string
  subscription_tier: 'free' | 'pro' | 'team' | 'enterprise'
  subscription_status: string
  max_members: number
  max_workspaces: number
  [key: string]: unknown
}

export interface MembershipRow {
  org_id: string
  role: 'owner' | 'admin' | 'member' | 'viewer'
}

export interface CloudWorkspace {
  id: string
  name: string
  slug: string
  description: string | null
  status: string
  task_goal: string | null
  current_step: string | null
  last_active_at: string | null
}

export interface WorkspaceState {
  task_goal?: string | null
  current_step?: string | null
  status?: string
  progress_data?: Record<string, unknown>
  next_steps?: unknown[]
  shared_memory?: Record<string, unknown>
}

export interface WorkspaceRow extends WorkspaceState {
  name: string
  slug: string
  updated_at: string
  [key: string]: unknown
}

export interface CloudConversation {
  id: string
  name: string
  conversation_type: string
  is_archived: boolean
  created_at: string
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool'
  content: string | null
  [key: string]: unknown
}

export interface LocalMessage extends ChatMessage {
  id?: string
}

export interface PulledMessage {
  role: string
  content: string
  _cloudId: string
  _cloudSenderAgent: string | null
  _cloudCreatedAt: string
}

export interface CloudAgent {
  id: string
  name: string
  slug: string
  agent_type: string
  description: string | null
  status: string
  avatar_url: string | null
}

export interface InvokeAgentOptions {
  /** Store the user's message and the agent's reply in this cloud conversation. */
  conversationId?: string
}

export interface AgentReply {
  content: string
  messageId: string
  agentName: string
}

export interface CloudModel {
  id: string
  display_name: string
  context_window: number
  max_output_tokens: number
  supports_tool_calling: boolean
  supports_streaming: boolean
  cost_tier: string
  reasoning: boolean
  tier_required: string
  /** = display_name */
  name: string
  /** The id's prefix before `/`. */
  provider: string
  capabilities: { tools: boolean; streaming: boolean; reasoning: boolean }
}

export interface CloudUsage {
  today: { tokens_used: number; tokens_limit: number | null; request_count: number; models_used: string[] }
  tier: string
  subscription_status: string
  tokens_used: number
  daily_limit: number | null
  remaining: number | null
  /** `YYYY-MM-DD` */
  period: string
  request_count: number
  is_unlimited: boolean
}

export interface AiProxyOptions {
  tools?: unknown[]
  temperature?: number
  max_tokens?: number
  response_format?: Record<string, unknown>
}

export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  choices: Array<{ index: number; message: ChatMessage; finish_reason: string | null }>
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number }
  _cloud_usage?: Record<string, unknown>
}

export interface ChatCompletionChunk {
  choices: Array<{ index?: number; delta: { role?: string; content?: string | null }; finish_reason?: string | null }>
  [key: string]: unknown
}

/* ---- Workspace sync (Phase 2) ---- */

/** Per-conversation entry of `.cloud-link.json`. */
export interface LinkedConversation {
  cloudConvId: string
  lastSyncAt?: string
  lastLocalMessageId?: string
  lastCloudMessageAt?: string
  /** Exactly-once push state (kept by this package; ignored by the old modules). */
  pushedCount?: number
  nextOrdinal?: number
  pushedHash?: string | null
  [key: string]: unknown
}

/** The contents of `.cloud-link.json`; unknown keys are preserved. */
export interface LinkData {
  version: number
  cloudWorkspaceId: string
  cloudWorkspaceName: string
  linkedAt: string
  lastSyncAt: string | null
  conversations: Record<string, LinkedConversation>
  syncConfig: {
    autoSync: boolean
    syncIntervalMs: number
    syncConversations: boolean
    syncWorkspaceState: boolean
    syncFiles: boolean
  }
  /** The cloud's `updated_at` at the last workspace sync (the conflict base). */
  workspaceUpdatedAt?: string
  [key: string]: unknown
}

/** A live `workspace_files` row (`fileSync.listFiles`). `file_path` is the workspace-relative path. */
export interface WorkspaceFileRow {
  id: string
  file_path: string
  file_size: number
  /** SHA-256, hex. */
  checksum: string | null
  mime_type: string | null
  file_type: string | null
  version: number
  updated_at: string | null
}

export type UploadedFile = TransferredFile

export type DownloadedFile = TransferredFile

/** `fileSync.syncFiles`. */
export interface FileSyncResult {
  uploaded: string[]
  downloaded: string[]
  deletedLocal: string[]
  deletedRemote: string[]
  /** The cloud copy of each kept as `conflictPath`. */
  conflicts: { filePath: string; conflictPath: string }[]
  /** Paths changed in the cloud during the run; the next run takes them. */
  skipped: string[]
  /**
   * Synced before and unchanged here, but without a cloud row or a record of their
   * deletion: left as they are, not uploaded again (see `FileDelta.keptLocal`).
   */
  keptLocal: string[]
  /**
   * Includes files here that could not be stat-ed or read, directories that could not be
   * read, and ignore files that could not be used (`IO_ERROR`): left alone both ways, with
   * everything under them (for an ignore file, under its directory). `computeDelta` lists
   * the same in its `failed`.
   * And cloud files whose object does not match their row (`CONTENT_MISMATCH`): nothing is
   * written, and the same row is not downloaded again, in any run, until it changes.
   */
  failed: { filePath: string; code: string; error: string }[]
  inSync: number
}

/**
 * Which binding artifact the generated loader actually loaded: `'native'` for
 * a native addon, otherwise the `platformArchABI` of the WASI flavor. Every
 * flavor napi-rs can build is listed, because `NAPI_RS_NATIVE_LIBRARY_PATH`
 * can point the loader at a WASI artifact this package does not build itself.
 */
export declare const __napiBindingTarget: 'native' | 'wasm32-wasi' | 'wasm32-wasip1'

/**
 * A pull handle on a streamed completion, opened once its first chunk has arrived.
 * `take()` hands over everything buffered as one JSON array text (parsed once on the JS
 * side), `""` when nothing is buffered yet, `null` at the end; `cancel()` closes the
 * connection.
 */
export declare class AiProxyStream {
  /**
   * The chunks buffered since the last call as the text of a JSON array; `""` when none
   * is buffered yet (the wake function given at opening is then called once there is);
   * `null` once the stream has reached `[DONE]`. Throws the stream's failure.
   */
  take(): string | null
  /** Closes the connection; later `take()`s return `null`. */
  cancel(): void
}

/** `cloudSync.auth`: the logged-in user's raw rows. */
export declare class CloudAuth {
  /** The GoTrue user (`id`, `email`, `app_metadata`, …), or `null`. */
  get user(): AuthUser | null
  /** The `profiles` row, or `null`. */
  get profile(): ProfileRow | null
  /** The `organizations` row of the user's first membership, or `null`. */
  get org(): OrganizationRow | null
  /** `{ org_id, role }` of the user's first membership, or `null`. */
  get membership(): MembershipRow | null
  isLoggedIn(): boolean
  /** Refreshes the session now (shared with any refresh already in flight). */
  refresh(): Promise<void>
}

/**
 * `cloudSync.client`: authenticated calls against `baseUrl`. JSON in and out, `null` for
 * 204, text for other content types; rejects with an `Error` carrying `status`, `url` and
 * `code` on non-2xx.
 */
export declare class CloudClient {
  get(path: string, headers?: Record<string, string>): Promise<unknown>
  post(path: string, body?: unknown, headers?: Record<string, string>): Promise<unknown>
  /** Adds `Prefer: return=representation` unless the caller set `Prefer`. */
  patch(path: string, body?: unknown, headers?: Record<string, string>): Promise<unknown>
  delete(path: string, headers?: Record<string, string>): Promise<unknown>
  request(path: string, options?: RequestOptions | null): Promise<unknown>
}

export declare class FileSync {
  /** The workspace's live files (`workspace_files` rows), ordered by path. */
  listFiles(wsId: string): Promise<WorkspaceFileRow[]>
  /**
   * Uploads `localDir/relPath` (streamed) and records it at the next version:
   * `{ filePath, storagePath, size, checksum, version }`. A path that is absolute, holds
   * `..`, a backslash or a NUL, or passes through a symlink out of `localDir` is rejected
   * (`INVALID_ARGUMENT`) before any request.
   */
  uploadFile(wsId: string, localDir: string, relPath: string): Promise<TransferredFile>
  /**
   * Downloads the cloud file to `localDir/relPath` through a temporary file, verified
   * against the recorded checksum and size: `{ filePath, storagePath, size, checksum, version }`.
   * An object that does not match them rejects with `CONTENT_MISMATCH`; nothing is written.
   */
  downloadFile(wsId: string, localDir: string, relPath: string): Promise<TransferredFile>
  /**
   * Deletes the file in the cloud (the row is kept, marked deleted at the next version):
   * `{ filePath, deleted }`.
   */
  deleteFile(wsId: string, relPath: string): Promise<DeletedFile>
  /**
   * What a sync of `localDir` would do: `{ toUpload, toDownload, synced, toDeleteLocal,
   * toDeleteRemote, conflicts, keptLocal }` (paths), `hashed` (files whose contents were
   * read), and `failed`: the paths it would leave alone, and why (as `syncFiles` reports
   * them).
   */
  computeDelta(wsId: string, localDir: string): Promise<FileDelta>
  /**
   * Two-way sync of `localDir` (default: the working directory) with the workspace
   * (default: the linked one), four transfers at a time. A conflict keeps both copies
   * (`name (cloud conflict).ext`, `cloud:sync:conflict`). Per-file failures are listed in
   * `failed`; the next run retries them, but for downloads refused because the object does
   * not match its row (`CONTENT_MISMATCH`), which wait until that row changes.
   */
  syncFiles(wsId?: string | null, localDir?: string | null): Promise<FileSyncResult>
}

export declare class NativeCloudSync {
  /**
   * `onEvent` receives every event as the JSON text of a `CloudEvent` (`{ type, payload }`;
   * weakly held: it never keeps Node alive).
   * The three secret functions reach the host's `secretsManager`.
   */
  constructor(onEvent?: ((eventJson: string) => void) | null, secretGet?: ((name: string) => Promise<string | null | undefined>) | null, secretSet?: ((name: string, value: string) => Promise<void>) | null, secretDelete?: ((name: string) => Promise<void>) | null)
  /**
   * Validates the configuration and prepares the client. `null` leaves cloud sync
   * unconfigured. Rejects when `baseUrl` is not an http(s) URL.
   */
  initialize(config?: CloudSyncConfig | null): Promise<void>
  /**
   * Password login. Rejects with the server's message (`code` `invalid_credentials` for a
   * wrong password); the password never appears in an error, event or log.
   */
  login(email: string, password: string): Promise<void>
  /**
   * Resumes the stored session. Never rejects; `false` when there is none, it was rejected,
   * or `autoLogin` is off.
   */
  tryAutoLogin(): Promise<boolean>
  /** Ends the session on the server (best effort) and always forgets it locally. */
  logout(): Promise<void>
  /**
   * Releases every timer, connection and callback. The stored session is kept, so the
   * next start logs in again.
   */
  destroy(): Promise<void>
  /** Throws `INVALID_ARGUMENT` for anything but a string, `null` or `undefined`. */
  setWorkingDir(dir: string | null): void
  isConfigured(): boolean
  isLoggedIn(): boolean
  /** Exactly the keys of `CloudStatus`; never a token. */
  getStatus(): CloudStatus
  /** Authenticated REST calls against `baseUrl`. */
  get client(): CloudClient
  /** The raw rows of the logged-in user (`null` fields when logged out). */
  get auth(): CloudAuth
  /**
   * Link state of the working directory (`getLinkedWorkspaceId()`, `getLinkData()`, …);
   * `null` before login.
   */
  get workspaceSync(): WorkspaceSync | null
  /**
   * The workspace's files in the cloud (`listFiles`, `uploadFile`, `downloadFile`,
   * `deleteFile`, `computeDelta`, `syncFiles`); `null` before login.
   */
  get fileSync(): FileSync | null
  /**
   * Links the working directory to a cloud workspace the user can see: writes
   * `.cloud-link.json` and starts auto-sync. A no-op when logged out; rejects with
   * `INVALID_ARGUMENT` for a malformed or invisible workspace, `NO_WORKING_DIR` without
   * `setWorkingDir`.
   */
  linkWorkspace(id: string, name?: string): Promise<void>
  /** Removes `.cloud-link.json` and stops auto-sync. A no-op when not linked. */
  unlinkWorkspace(): Promise<void>
  /**
   * Pushes the workspace state: the updated row, or `null` when the sync engine debounces
   * it, a conflict kept the cloud version (`cloud:sync:conflict`), the cloud was
   * unreachable (queued), or nothing is linked.
   */
  pushWorkspaceState(localState: WorkspaceState): Promise<WorkspaceRow | null>
  /** The linked workspace's state row, or `null`. */
  pullWorkspaceState(): Promise<WorkspaceRow | null>
  /** The organization's workspaces, most recently active first. */
  listCloudWorkspaces(): Promise<CloudWorkspace[]>
  /**
   * Pushes the new `user`/`assistant` messages of a local history exactly once (other
   * roles and messages carrying `_cloudId` are skipped). Offline, they are queued in the
   * outbox and `queued` says how many.
   */
  pushConversation(cloudConvId: string, messages: LocalMessage[], lastSyncAt?: string | null): Promise<PushConversationResult>
  /** Every message after `since` written by others, oldest first, fetched page by page. */
  pullConversation(cloudConvId: string, since?: string | null): Promise<PullConversationResult>
  /** The linked workspace's conversations, oldest first; `[]` when not linked. */
  listCloudConversations(): Promise<CloudConversation[]>
  /** The organization's agents, ordered by name; cached for 60 s and dropped on logout. */
  listAgents(): Promise<CloudAgent[]>
  /** Forgets the cached agent list, so the next `listAgents()` asks the cloud. */
  clearAgentCache(): void
  /**
   * One turn with an agent; the last 20 history messages go along. With
   * `options.conversationId` the cloud stores both messages in that conversation.
   * Rejects with the server's reason (`status` 404 for an unknown agent, `code`
   * `RATE_LIMITED` and `retryAfter` when rate limited).
   */
  invokeAgent(slug: string, message: string, history?: ChatMessage[] | null, options?: InvokeAgentOptions | null): Promise<AgentReply>
  /**
   * The models the organization's tier may use, with `name`, `provider` and
   * `capabilities` added; `[]` when logged out or on failure.
   */
  listCloudModels(): Promise<CloudModel[]>
  /**
   * Today's usage with the flat fields the UI renders; `null` when logged out or on
   * failure. Also emits `cloud:usage-update`.
   */
  getUsage(): Promise<CloudUsage | null>
  /**
   * One completion through the metered proxy, returned as the server sent it. A daily
   * limit rejects with `code` `RATE_LIMITED`; nothing waits longer than `aiTimeoutMs`.
   */
  aiProxyRequest(provider: string, model: string, messages: ChatMessage[], options?: AiProxyOptions | null): Promise<ChatCompletion>
  /**
   * Opens the stream behind `aiProxyStream` (the JS layer turns it into an async generator);
   * resolves once the first chunk has arrived (or the stream has ended). `wake` is called
   * whenever a `take()` that found nothing can take again.
   */
  aiProxyStreamOpen(model: string, messages: ChatMessage[], options: AiProxyOptions | null | undefined, wake: () => void): Promise<AiProxyStream>
  getPresence(): Array<PresenceMember>
  broadcast(event: string, payload: Record<string, unknown>): Promise<void>
}

export declare class WorkspaceSync {
  /** The linked cloud workspace's id, or `null`. */
  getLinkedWorkspaceId(): string | null
  /** The contents of `.cloud-link.json` (unknown keys included), or `null` when not linked. */
  getLinkData(): LinkData | null
  /**
   * Maps a local conversation name to a cloud conversation in the link file. Throws
   * `INVALID_ARGUMENT` when either is not a string.
   */
  linkConversation(localName: string, cloudConvId: string): void
  /** Creates a conversation in the linked workspace, maps `name` to it, and returns its row. */
  createConversation(name: string, conversationType?: string | null): Promise<CloudConversation>
}

/** `getStatus()`: exactly these keys, never a token. */
export interface CloudStatus {
  loggedIn: boolean
  user: StatusUser | null
  profile: StatusProfile | null
  org: StatusOrg | null
  role: 'owner' | 'admin' | 'member' | 'viewer' | null
  configured: boolean
  linkedWorkspace: LinkedWorkspace | null
  syncState: SyncState
  /** `null` while logged out. */
  syncEngineStatus: SyncEngineStatus | null
}

/** `initialize()`'s argument: `loadCloudConfig()`'s object plus optional settings. */
export interface CloudSyncConfig {
  /** `https://<project>.supabase.co`, or the local cloud's URL. */
  baseUrl: string
  anonKey: string
  /** `tryAutoLogin()` does nothing when false. Default true. */
  autoLogin?: boolean
  /** Milliseconds. Default 30000. */
  syncInterval?: number
  /** Milliseconds. Default 60000. */
  presenceInterval?: number
  /** Milliseconds. Default 2000. */
  syncDebounceMs?: number
  /** Milliseconds to establish a connection. Default 10000 (or `OBOTO_CLOUD_CONNECT_TIMEOUT_MS`). */
  connectTimeoutMs?: number
  /** Milliseconds for a whole request. Default 30000 (or `OBOTO_CLOUD_REQUEST_TIMEOUT_MS`). */
  requestTimeoutMs?: number
  /** Milliseconds for an AI proxy or agent call. Default 120000 (or `OBOTO_CLOUD_AI_TIMEOUT_MS`). */
  aiTimeoutMs?: number
  /** Milliseconds a stream may stay silent. Default 60000 (or `OBOTO_CLOUD_STREAM_IDLE_TIMEOUT_MS`). */
  streamIdleTimeoutMs?: number
  /**
   * Milliseconds between realtime heartbeats; one left unanswered until the next drops the
   * socket, which then reconnects. Default 25000 (or `OBOTO_CLOUD_REALTIME_HEARTBEAT_MS`).
   */
  realtimeHeartbeatMs?: number
  /**
   * Bytes an AI stream's SSE line or event may hold. Default 1 MiB (or
   * `OBOTO_CLOUD_MAX_STREAM_EVENT_BYTES`); beyond it the stream fails with `RESPONSE_TOO_LARGE`.
   */
  maxStreamEventBytes?: number
  /**
   * Bytes a reply body read whole (JSON or text) may hold. Default 8 MiB (or
   * `OBOTO_CLOUD_MAX_RESPONSE_BYTES`); beyond it the call fails with `RESPONSE_TOO_LARGE`.
   */
  maxResponseBytes?: number
  /** Where the refresh token is kept. Default `auto` (or `OBOTO_CLOUD_TOKEN_STORE`). */
  tokenStore?: 'auto' | 'keychain' | 'secrets' | 'memory'
  /**
   * Refresh the session on a timer ahead of expiry. Default true; when false, tokens are
   * refreshed on demand only.
   */
  autoRefresh?: boolean
  /**
   * Open a realtime socket for the linked workspace (live messages, presence, broadcasts,
   * no polling while it is up). Default true; `OBOTO_CLOUD_REALTIME=false` turns it off.
   */
  realtime?: boolean
}

/** `fileSync.deleteFile()`. */
export interface DeletedFile {
  filePath: string
  /** `false` when there was no live file at that path. */
  deleted: boolean
}

/** `fileSync.computeDelta()`: workspace-relative paths per action. */
export interface FileDelta {
  toUpload: Array<string>
  toDownload: Array<string>
  synced: Array<string>
  toDeleteLocal: Array<string>
  toDeleteRemote: Array<string>
  conflicts: Array<string>
  /**
   * Synced before and unchanged here, but the cloud has no row for them and no record
   * of their deletion (rows removed outside the sync): left as they are, not uploaded
   * again. Only a deletion recorded in the cloud deletes a local file.
   */
  keptLocal: Array<string>
  /** Files whose contents the scan read (the rest came from the size + mtime cache). */
  hashed: number
  /**
   * What a sync would not act on, and why, as in `FileSyncResult.failed`: files here that
   * cannot be stat-ed or read, directories that cannot be read, and ignore files that
   * cannot be used (`IO_ERROR`), each left alone both ways with all under it; and cloud
   * files whose object did not match this very row (`CONTENT_MISMATCH`), not in
   * `toDownload` or `conflicts` until the row changes.
   */
  failed: Array<FileFailure>
}

/** A path a file sync does not act on, and why. */
export interface FileFailure {
  filePath: string
  code: string
  error: string
}

export interface LinkedWorkspace {
  id: string
  name: string
}

/**
 * Reads `OBOTO_CLOUD_URL`, `OBOTO_CLOUD_KEY`, `OBOTO_CLOUD_AUTO_LOGIN`,
 * `OBOTO_CLOUD_SYNC_INTERVAL` and `OBOTO_CLOUD_PRESENCE_INTERVAL`; `null` when the URL or
 * the key is missing or empty.
 */
export declare function loadCloudConfig(): LoadedCloudConfig | null

/** What `loadCloudConfig()` returns (exactly the legacy keys). */
export interface LoadedCloudConfig {
  baseUrl: string
  anonKey: string
  autoLogin: boolean
  syncInterval: number
  presenceInterval: number
}

/**
 * A member online in the linked workspace (`getPresence()`, `cloud:presence:updated`),
 * one entry per user however many machines it is on.
 */
export interface PresenceMember {
  userId: string
  displayName: string | null
  avatarUrl: string | null
  status: string
  lastSeen: string | null
}

/** `pullConversation()`'s result: others' messages after `since`, oldest first. */
export interface PullConversationResult {
  messages: PulledMessage[]
  /** The newest row seen (own rows included), to pass as the next `since`. */
  lastCloudMessageAt?: string
}

/** `pushConversation()`'s result. */
export interface PushConversationResult {
  /** Rows newly inserted (a repeated push inserts none). */
  pushed: number
  lastSyncAt?: string
  /** Messages queued in the offline outbox because the cloud was unreachable. */
  queued?: number
  /**
   * Messages the cloud refused for their content or, even alone, for their size
   * (`PGRST413`), reported in `cloud:sync:error` (`refusedIds`) and never sent again.
   */
  refused?: number
}

/** `client.request(path, options)`. */
export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE' | 'HEAD'
  body?: unknown
  headers?: Record<string, string>
}

export interface StatusOrg {
  id: string
  name: string
  slug: string
  tier: string
}

export interface StatusProfile {
  displayName: string | null
  avatarUrl: string | null
}

export interface StatusUser {
  id: string
  email: string | null
}

export interface SyncEngineStatus {
  running: boolean
  state: SyncState
  workspace: SyncTypeStatus
  conversations: SyncTypeStatus
  /**
   * Entries of the logged-in user waiting in the offline outbox (another user's wait
   * for that user's next login).
   */
  outboxPending: number
  /** `.cloud-outbox.jsonl` beside `.cloud-link.json`. */
  outboxPath: string | null
  consecutiveFailures: number
  /** Why `.cloud-link.json` was ignored (unreadable), if it was. */
  linkError: string | null
}

export interface SyncTypeStatus {
  state: SyncState
  lastSyncAt: string | null
  error: string | null
}

/** `fileSync.uploadFile()` and `downloadFile()`: the file as recorded in the cloud. */
export interface TransferredFile {
  /** Workspace-relative, `/`-separated. */
  filePath: string
  /** `{workspaceId}/{filePath}` in the `workspace-files` bucket. */
  storagePath: string
  size: number
  /** SHA-256, hex. */
  checksum: string | null
  version: number
}
