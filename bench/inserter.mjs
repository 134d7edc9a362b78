// The realtime bench's writer, in a process of its own: the rows a client receives are
// written by someone else, and the bench's CPU and memory figures are then the client's alone.
// Messages in: `{ id, url, headers, body }`, or `burst: {conv, role, sender, from, count}` for
// rows built here; out: `{ id, error? }` once the INSERT is answered.
const rowsOf = ({ conv, role, sender, from, count }) =>
  JSON.stringify(
    Array.from({ length: count }, (_, i) => ({
      conversation_id: conv,
      role,
      content: `sus ${from + i}`,
      sender_user_id: sender,
    })),
  );

process.on('message', async ({ id, url, headers, body, burst }) => {
  try {
    const r = await fetch(url, { method: 'POST', headers, body: burst ? rowsOf(burst) : body });
    const text = await r.text();
    process.send({ id, error: r.ok ? null : `insert: ${r.status} ${text}` });
  } catch (e) {
    process.send({ id, error: String(e) });
  }
});
process.on('disconnect', () => process.exit(0));
