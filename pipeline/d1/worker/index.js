// pg2edge D1 Worker: the sync daemon's door into the D1 database bound as DB.
//
// Every request must carry "Authorization: Bearer <PG2EDGE_TOKEN>" (a Worker secret:
// `wrangler secret put PG2EDGE_TOKEN`; locally, `.dev.vars`). A missing or wrong token
// gets 401 and runs nothing. The token is compared in constant time (SHA-256 of both
// sides, then crypto.subtle.timingSafeEqual).
//
// POST /v1/batch   {"statements": [{"sql": "...", "params": [...]}, ...], "locate": false}
//     Runs all statements with one env.DB.batch() call, which D1 runs as one
//     transaction: all of them or none. pg2edge puts its position row in the same
//     batch, so a batch is applied exactly once.
//     200 {"changes": [n, ...], "bookmark": "..."}
//     422 {"error": "...", "index": i}  D1 refused a statement; nothing was applied.
//         With "locate": true, index is the first statement that fails (found by
//         re-running prefixes of the batch that are always rolled back), else null.
//     503 {"error": "..."}  D1 failed in a way worth retrying; nothing was applied.
// POST /v1/query   {"sql": "...", "params": [...], "bookmark": "..."|null}
//     One read. 200 {"columns": [...], "rows": [[...], ...], "bookmark": "..."}
//     "bookmark" (D1 Sessions API) makes the read see at least that write.
//
// Values: JSON null, numbers and strings bind as they are; {"blob": "<base64>"} binds
// bytes; {"int": "<digits>"} binds an integer beyond 2^53 as text (an INTEGER column
// stores it as an exact integer); {"real": "Infinity"|"-Infinity"} binds an infinite
// REAL as the text "1e999" (D1 turns a bound Infinity into NULL; a REAL column stores
// that text as the infinite REAL). In results, blobs come back as {"blob": "<base64>"};
// D1 returns an infinite REAL as null (select CAST(x AS TEXT) to see it).

const PROBE = "pg2edge_probe_end";  // an undefined SQL function: a statement that always fails
// D1 refused the SQL itself (422: sending it again cannot help). Anything else is worth a retry (503).
const REFUSED = /SQLITE_(CONSTRAINT|ERROR|MISMATCH|TOOBIG|RANGE|AUTH)|constraint failed|no such|syntax error|too big|too many (SQL variables|terms|columns|arguments)|datatype mismatch|not authorized/i;

export default {
  async fetch(request, env) {
    if (!(await authorized(request, env))) {
      return json({ error: "unauthorized" }, 401);
    }
    const path = new URL(request.url).pathname;
    if (request.method !== "POST" || (path !== "/v1/batch" && path !== "/v1/query")) {
      return json({ error: "not found" }, 404);
    }
    let body;
    try {
      body = await request.json();
    } catch {
      return json({ error: "the body is not JSON" }, 400);
    }
    try {
      return path === "/v1/batch" ? await batch(env.DB, body) : await query(env.DB, body);
    } catch (e) {
      const message = String(e && e.message ? e.message : e);
      return json({ error: message, index: null }, REFUSED.test(message) ? 422 : 503);
    }
  },
};

async function authorized(request, env) {
  const secret = env.PG2EDGE_TOKEN;
  const header = request.headers.get("Authorization") || "";
  if (!secret || !header.startsWith("Bearer ")) return false;
  const [given, wanted] = await Promise.all([sha256(header.slice(7)), sha256(secret)]);
  return crypto.subtle.timingSafeEqual(given, wanted);
}

async function sha256(text) {
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
}

async function batch(db, body) {
  const list = body.statements;
  if (!Array.isArray(list) || list.length === 0) return json({ error: "no statements" }, 400);
  const session = db.withSession("first-primary");
  const statements = list.map((s) => session.prepare(s.sql).bind(...(s.params || []).map(param)));
  try {
    const results = await session.batch(statements);
    return json({ changes: results.map((r) => r.meta.changes), bookmark: session.getBookmark() });
  } catch (e) {
    const message = String(e && e.message ? e.message : e);
    if (!REFUSED.test(message)) throw e;
    const index = body.locate ? await firstFailing(session, statements) : null;
    return json({ error: message, index }, 422);
  }
}

// The batch failed and was rolled back. Find the first statement that fails: run a
// prefix followed by a statement that always fails, so D1 rolls every probe back too.
async function firstFailing(session, statements) {
  let lo = 0, hi = statements.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (await prefixFails(session, statements.slice(0, mid + 1))) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

async function prefixFails(session, prefix) {
  try {
    await session.batch([...prefix, session.prepare(`SELECT ${PROBE}()`)]);
  } catch (e) {
    return !String(e && e.message ? e.message : e).includes(PROBE);
  }
  throw new Error("pg2edge: a probe batch did not fail");
}

async function query(db, body) {
  if (typeof body.sql !== "string") return json({ error: "no sql" }, 400);
  const session = db.withSession(body.bookmark || "first-unconstrained");
  const stmt = session.prepare(body.sql).bind(...(body.params || []).map(param));
  const [columns, ...rows] = await stmt.raw({ columnNames: true });
  return json({ columns, rows: rows.map((r) => r.map(value)), bookmark: session.getBookmark() });
}

function param(v) {
  if (v !== null && typeof v === "object") {
    if (typeof v.blob === "string") return Uint8Array.from(atob(v.blob), (c) => c.charCodeAt(0));
    if (typeof v.int === "string") return v.int;
    if (v.real === "Infinity") return "1e999";
    if (v.real === "-Infinity") return "-1e999";
  }
  return v;
}

function value(v) {
  if (v instanceof ArrayBuffer || Array.isArray(v)) {  // D1 returns a BLOB as bytes
    const bytes = Array.isArray(v) ? Uint8Array.from(v) : new Uint8Array(v);
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return { blob: btoa(text) };
  }
  return v;
}

function json(data, status = 200) {
  return new Response(JSON.stringify(data), { status, headers: { "content-type": "application/json" } });
}
