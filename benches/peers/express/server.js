// The Express + pg peer of `cargo bench --bench ingest`: what a webhook receiver written the usual way in Node
// does with Meta's traffic. It checks X-Hub-Signature-256 over the raw body (constant-time), parses the body,
// stores every messaging event of every entry in PostgreSQL (one multi-row INSERT per request, duplicates by
// their key ignored), and only then answers 200 EVENT_RECEIVED: the same promise Switchboard's durable inbox
// makes ("a 200 means committed"). One process, one event loop (one core), a pool of 10 connections.
//
// Started by the benchmark: PORT, DATABASE_URL and APP_SECRET come from the environment; it creates its table,
// prints "listening PORT" once it serves, and stops on SIGTERM.
'use strict';

const crypto = require('crypto');
const express = require('express');
const { Pool } = require('pg');

const port = Number(process.env.PORT || 0);
const secret = process.env.APP_SECRET;
if (!secret || !process.env.DATABASE_URL) {
  console.error('APP_SECRET and DATABASE_URL are required');
  process.exit(2);
}
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 });

function signed(header, body) {
  if (typeof header !== 'string' || !header.startsWith('sha256=')) return false;
  const given = Buffer.from(header.slice(7), 'hex');
  const expected = crypto.createHmac('sha256', secret).update(body).digest();
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

const app = express();
app.post('/api/facebook-webhook', express.raw({ type: '*/*', limit: '1mb' }), async (req, res) => {
  if (!signed(req.get('x-hub-signature-256'), req.body)) return res.status(403).send('bad signature');
  let payload;
  try {
    payload = JSON.parse(req.body.toString('utf8'));
  } catch (e) {
    return res.status(400).send('not JSON');
  }
  const pages = [], keys = [], events = [];
  for (const entry of payload.entry || []) {
    for (const event of entry.messaging || []) {
      const mid = event.message && event.message.mid;
      pages.push(String(entry.id));
      keys.push(mid || crypto.createHash('sha256').update(JSON.stringify(event)).digest('hex'));
      events.push(JSON.stringify(event));
    }
  }
  try {
    if (events.length > 0) {
      await pool.query(
        'INSERT INTO peer_inbox (page_id, dedup_key, event) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) ' +
          'ON CONFLICT (page_id, dedup_key) DO NOTHING',
        [pages, keys, events],
      );
    }
    res.status(200).type('text/plain').send('EVENT_RECEIVED');
  } catch (e) {
    res.status(503).send('storage unavailable');
  }
});

(async () => {
  await pool.query(
    'CREATE TABLE IF NOT EXISTS peer_inbox (id BIGSERIAL PRIMARY KEY, page_id TEXT NOT NULL, dedup_key TEXT NOT NULL, ' +
      "event TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', received_at TIMESTAMPTZ NOT NULL DEFAULT now(), " +
      'UNIQUE (page_id, dedup_key))',
  );
  const server = app.listen(port, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
  process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
