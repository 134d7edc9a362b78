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
