// Reads from an embedded replica of a libSQL server, the way the seed's Next.js app does:
//   node read_replica.mjs FILE.db SYNC_URL SQL [SQL ...]
// createClient({url: 'file:FILE.db', syncUrl, authToken}) then sync(), then each SQL; prints one JSON
// line {"synced": {...}, "results": [[row objects], ...]}. The token comes from TURSO_AUTH_TOKEN, never argv.
// With --watch N it keeps ONE long-lived client and re-syncs and re-runs the SQL every time a line
// arrives on stdin (up to N times): the ADD COLUMN pitfall needs a long-lived client.
import { createClient } from "@libsql/client";
import readline from "node:readline";

const args = process.argv.slice(2);
let watch = 0;
if (args[0] === "--watch") { watch = Number(args[1]); args.splice(0, 2); }
const [file, syncUrl, ...sqls] = args;
const client = createClient({ url: `file:${file}`, syncUrl, authToken: process.env.TURSO_AUTH_TOKEN || undefined });

function plain(row, columns) {
  const out = {};
  columns.forEach((c, i) => { const v = row[i]; out[c] = typeof v === "bigint" ? v.toString() : v; });
  return out;
}

async function once() {
  const synced = await client.sync();
  const results = [];
  for (const sql of sqls) {
    try {
      const rs = await client.execute(sql);
      results.push({ columns: rs.columns, rows: rs.rows.map((r) => plain(r, rs.columns)) });
    } catch (e) {
      if (!watch) throw e;
      results.push({ error: String(e.message || e) });  // a long-lived reader reports and goes on
    }
  }
  process.stdout.write(JSON.stringify({ synced: synced ?? null, results }) + "\n");
}

await once();
if (watch > 0) {
  const rl = readline.createInterface({ input: process.stdin });
  let left = watch;
  for await (const _ of rl) {
    await once();
    if (--left <= 0) break;
  }
}
client.close();
