// ESM entry: the same objects as the CommonJS entry, every runtime name that
// cloud-sync.d.ts declares (checked by __test__/exports.test.mjs).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const cjs = require('./cloud-sync.js')

export const {
  CloudSync,
  NativeCloudSync,
  CloudClient,
  CloudAuth,
  WorkspaceSync,
  FileSync,
  AiProxyStream,
  loadCloudConfig,
  __napiBindingTarget,
} = cjs
export default cjs
