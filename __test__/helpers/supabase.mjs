// Options for `createClient` in the conformance suites.
//
// Node 20 has no global WebSocket and supabase-js wants one at construction; these suites
// never open a realtime channel, so a transport that refuses to connect is enough.
export class NoRealtime {
  constructor() {
    throw new Error('realtime is not used by these tests');
  }
}

export const SUPABASE_OPTIONS = {
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  realtime: { transport: NoRealtime },
};
