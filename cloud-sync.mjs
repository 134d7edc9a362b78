// ESM entry: the same objects as the CommonJS entry.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const cjs = require('./cloud-sync.js')

export const { CloudSync, NativeCloudSync, CloudClient, CloudAuth, loadCloudConfig } = cjs
export default cjs
