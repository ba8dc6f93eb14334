/**
 * Sessions on Redis: one hash per session, a small tombstone hash per session that outlives it
 * until its absolute deadline (so an expired token reads as expired, not unknown), one sorted set
 * (index) and one counter (epoch) per user, all under the user's hash tag. Every write is a Lua script touching one slot, and every
 * write to a session first checks it still exists, so nothing a slow request does can bring a
 * revoked session back. Reads are a single `HGETALL`. Nothing ever scans the keyspace.
 *
 * Scripts build member keys from the session prefix they are given (same hash tag, so the same
 * slot as their declared keys), which is how a per-user operation stays one script on a cluster.
 *
 * @module
 */
import { LuaScript, throwFirstError, type RedisStore } from '../stores/redis-store.js';
import type { RedisArg } from '../stores/redis-driver.js';
import { KeyLayout, type SessionRef, type UserRef } from './keys.js';
import {
  DATA_PREFIX,
  recordFrom,
  tombstoneFrom,
  type CreateInput,
  type CreateOutcome,
  type ListedRecord,
  type Lookup,
  type RotateInput,
  type RotateOutcome,
  type SessionBackend,
  type SessionRecord,
  type TouchInput,
  type TouchOutcome,
  type UpdateInput,
  type UpdateOutcome,
} from './record.js';

/**
 * Shared helpers: keep the index's TTL at its latest member's expiry; drop expired members and
 * mark their tombstones as reported (the caller reports them as expired); mark the tombstone of a
 * session revoked or rotated away (`k`), keeping its TTL (the absolute deadline).
 */
const HELPERS = `
local function ms(x) return string.format('%d', x) end
local function tomb(prefix, id) return string.sub(prefix, 1, -3) .. 't:' .. id end
local function reported(t)
  if redis.call('EXISTS', t) == 0 then return 0 end
  return redis.call('HSETNX', t, 'r', '1')
end
local function ended(t, kind)
  if redis.call('EXISTS', t) == 1 then redis.call('HSET', t, 'k', kind) end
end
local function settle(idx, now)
  local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if #top == 0 then return end
  local ttl = tonumber(top[2]) - now
  if ttl < 1 then ttl = 1 end
  redis.call('PEXPIRE', idx, ms(ttl))
end
local function prune(idx, prefix, now)
  local gone = redis.call('ZRANGEBYSCORE', idx, '-inf', ms(now))
  for i = 1, #gone do
    redis.call('ZREM', idx, gone[i])
    redis.call('DEL', prefix .. gone[i])
    reported(tomb(prefix, gone[i]))
  end
  return gone
end
`;

const lua = (body: string) => new LuaScript(HELPERS + body);

/**
 * KEYS: index, epoch, session. ARGV: prefix, now, id, hash, userId, uref, absoluteAt, expiresAt,
 * ip, ua, limit (0: none), onLimit, expected epoch ('' : any), then data field/value pairs.
 */
const CREATE = lua(`
local idx, ep, skey = KEYS[1], KEYS[2], KEYS[3]
local prefix, now = ARGV[1], tonumber(ARGV[2])
if ARGV[13] ~= '' then
  local cur = redis.call('GET', ep) or '0'
  if cur ~= ARGV[13] then return {'epoch', {}, {}} end
end
if redis.call('EXISTS', skey) == 1 then return {'collision', {}, {}} end
local expired = prune(idx, prefix, now)
local evicted = {}
local limit = tonumber(ARGV[11])
if limit > 0 then
  local members = redis.call('ZRANGE', idx, 0, -1)
  if #members >= limit then
    local aged = {}
    for i = 1, #members do
      local c = redis.call('HGET', prefix .. members[i], 'c')
      if c then
        aged[#aged + 1] = {members[i], tonumber(c)}
      else
        redis.call('ZREM', idx, members[i])
        reported(tomb(prefix, members[i]))
        expired[#expired + 1] = members[i]
      end
    end
    if #aged >= limit then
      if ARGV[12] == 'reject' then
        settle(idx, now)
        return {'limit', expired, {}}
      end
      table.sort(aged, function(x, y)
        if x[2] == y[2] then return x[1] < y[1] end
        return x[2] < y[2]
      end)
      for i = 1, #aged - limit + 1 do
        redis.call('DEL', prefix .. aged[i][1])
        ended(tomb(prefix, aged[i][1]), 'revoked')
        redis.call('ZREM', idx, aged[i][1])
        evicted[#evicted + 1] = aged[i][1]
      end
    end
  end
end
local fields = {'h', ARGV[4], 'u', ARGV[5], 'x', ARGV[6], 'c', ARGV[2], 'l', ARGV[2], 'a', ARGV[7]}
if ARGV[9] ~= '' then fields[#fields + 1] = 'ip'; fields[#fields + 1] = ARGV[9] end
if ARGV[10] ~= '' then fields[#fields + 1] = 'ua'; fields[#fields + 1] = ARGV[10] end
for i = 14, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', skey, unpack(fields))
local exp = tonumber(ARGV[8])
redis.call('PEXPIRE', skey, ms(math.max(1, exp - now)))
local t = tomb(prefix, ARGV[3])
redis.call('DEL', t)
redis.call('HSET', t, 'h', ARGV[4], 'u', ARGV[5], 'x', ARGV[6])
redis.call('PEXPIRE', t, ms(math.max(1, tonumber(ARGV[7]) - now)))
redis.call('ZADD', idx, ms(exp), ARGV[3])
settle(idx, now)
return {'ok', expired, evicted}
`);

/** KEYS: session, index. ARGV: prefix, now, interval, expiresAt, id, ip, ua. */
const TOUCH = lua(`
local l = redis.call('HGET', KEYS[1], 'l')
if not l then return {0, {}} end
if redis.call('HEXISTS', KEYS[1], 'n') == 1 then return {0, {}} end
local now = tonumber(ARGV[2])
if now - tonumber(l) < tonumber(ARGV[3]) then return {0, {}} end
local exp = tonumber(ARGV[4])
local a = tonumber(redis.call('HGET', KEYS[1], 'a'))
if a and a < exp then exp = a end
if exp <= now then return {0, {}} end
local fields = {'l', ARGV[2]}
if ARGV[6] ~= '' then fields[#fields + 1] = 'ip'; fields[#fields + 1] = ARGV[6] end
if ARGV[7] ~= '' then fields[#fields + 1] = 'ua'; fields[#fields + 1] = ARGV[7] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ms(exp - now))
local expired = prune(KEYS[2], ARGV[1], now)
redis.call('ZADD', KEYS[2], ms(exp), ARGV[5])
settle(KEYS[2], now)
return {1, expired}
`);

/**
 * KEYS: session. ARGV: maxBytes, maxKeys, expected data version ('': any), pair count,
 * field/value pairs, fields to delete. Every write bumps the data version `v`; with an expected
 * version the write happens only if no other write came in between (compare-and-set).
 */
const UPDATE = lua(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', 0} end
if redis.call('HEXISTS', KEYS[1], 'n') == 1 then return {'rotated', 0} end
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= version then return {'conflict', version} end
local all = redis.call('HGETALL', KEYS[1])
local size = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == '${DATA_PREFIX}' then size[all[i]] = #all[i] - 2 + #all[i + 1] end
end
local nset = tonumber(ARGV[4])
local sets, dels = {}, {}
for i = 0, nset - 1 do
  local f, v = ARGV[5 + 2 * i], ARGV[6 + 2 * i]
  size[f] = #f - 2 + #v
  sets[#sets + 1] = f
  sets[#sets + 1] = v
end
for i = 5 + 2 * nset, #ARGV do
  size[ARGV[i]] = nil
  dels[#dels + 1] = ARGV[i]
end
local total, count = 0, 0
for _, s in pairs(size) do
  total = total + s
  count = count + 1
end
if total > tonumber(ARGV[1]) or count > tonumber(ARGV[2]) then return {'too-large', version} end
if #sets > 0 then redis.call('HSET', KEYS[1], unpack(sets)) end
if #dels > 0 then redis.call('HDEL', KEYS[1], unpack(dels)) end
return {'ok', redis.call('HINCRBY', KEYS[1], 'v', 1)}
`);

/**
 * KEYS: old session, new session, index, old tombstone, new tombstone. ARGV: now, old id, new id,
 * new hash, expiresAt, graceUntil, ip, ua.
 */
const ROTATE = lua(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('HEXISTS', KEYS[1], 'n') == 1 then return 'rotated' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'collision' end
local now = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local fields = {}
local a, u, x
for i = 1, #all, 2 do
  local f = all[i]
  if f == 'a' then a = tonumber(all[i + 1]) end
  if f == 'u' then u = all[i + 1] end
  if f == 'x' then x = all[i + 1] end
  if f ~= 'h' and f ~= 'l' and not (f == 'ip' and ARGV[7] ~= '') and not (f == 'ua' and ARGV[8] ~= '') then
    fields[#fields + 1] = f
    fields[#fields + 1] = all[i + 1]
  end
end
fields[#fields + 1] = 'h'; fields[#fields + 1] = ARGV[4]
fields[#fields + 1] = 'l'; fields[#fields + 1] = ARGV[1]
if ARGV[7] ~= '' then fields[#fields + 1] = 'ip'; fields[#fields + 1] = ARGV[7] end
if ARGV[8] ~= '' then fields[#fields + 1] = 'ua'; fields[#fields + 1] = ARGV[8] end
local exp = tonumber(ARGV[5])
if a and a < exp then exp = a end
if exp <= now then return 'gone' end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('PEXPIRE', KEYS[2], ms(exp - now))
ended(KEYS[4], 'rotated')
if a and u and x then
  redis.call('HSET', KEYS[5], 'h', ARGV[4], 'u', u, 'x', x)
  redis.call('PEXPIRE', KEYS[5], ms(math.max(1, a - now)))
end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[3], ms(exp), ARGV[3])
local grace = tonumber(ARGV[6])
if grace > now then
  redis.call('HSET', KEYS[1], 'n', ARGV[3], 'g', ARGV[6])
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 0 or pttl > grace - now then redis.call('PEXPIRE', KEYS[1], ms(grace - now)) end
else
  redis.call('DEL', KEYS[1])
end
settle(KEYS[3], now)
return 'ok'
`);

/**
 * KEYS: session, index, tombstone. ARGV: prefix, id, now. Also deletes the successor of a
 * rotated-away token. A revoked session's tombstone stays, marked: its token reads as unknown
 * but is not counted as a guess. (A session already gone keeps its tombstone as it was: expired.)
 */
const REMOVE = lua(`
local removed = {}
local n = redis.call('HGET', KEYS[1], 'n')
if redis.call('DEL', KEYS[1]) == 1 then
  removed[#removed + 1] = ARGV[2]
  ended(KEYS[3], 'revoked')
end
redis.call('ZREM', KEYS[2], ARGV[2])
if n then
  if redis.call('DEL', ARGV[1] .. n) == 1 then
    removed[#removed + 1] = n
    ended(tomb(ARGV[1], n), 'revoked')
  end
  redis.call('ZREM', KEYS[2], n)
end
settle(KEYS[2], tonumber(ARGV[3]))
return removed
`);

/**
 * KEYS: session, index, tombstone. ARGV: id, now. Deletes a session found past a deadline and
 * keeps its tombstone, marked reported. 1 only for the one caller that reports the expiry.
 */
const EXPIRE = lua(`
local d = redis.call('DEL', KEYS[1])
local z = redis.call('ZREM', KEYS[2], ARGV[1])
settle(KEYS[2], tonumber(ARGV[2]))
if redis.call('EXISTS', KEYS[3]) == 1 then return redis.call('HSETNX', KEYS[3], 'r', '1') end
if d + z > 0 then return 1 end
return 0
`);

/** KEYS: index, epoch. ARGV: prefix, now, id to keep (''), bump epoch ('1'), epoch TTL. */
const REMOVE_ALL = lua(`
local now = tonumber(ARGV[2])
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local revoked, expired = {}, {}
for i = 1, #members, 2 do
  local m = members[i]
  if m ~= ARGV[3] then
    redis.call('DEL', ARGV[1] .. m)
    redis.call('ZREM', KEYS[1], m)
    if tonumber(members[i + 1]) <= now then
      reported(tomb(ARGV[1], m))
      expired[#expired + 1] = m
    else
      ended(tomb(ARGV[1], m), 'revoked')
      revoked[#revoked + 1] = m
    end
  end
end
if ARGV[4] == '1' then
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
settle(KEYS[1], now)
return {revoked, expired}
`);

/** KEYS: index. ARGV: prefix, now. */
const LIST = lua(`
local now = tonumber(ARGV[2])
local expired = prune(KEYS[1], ARGV[1], now)
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #members, 2 do
  local f = redis.call('HMGET', ARGV[1] .. members[i], 'c', 'l', 'a', 'ip', 'ua')
  if f[1] then
    out[#out + 1] = {members[i], members[i + 1], f[1], f[2], f[3], f[4] or '', f[5] or ''}
  else
    redis.call('ZREM', KEYS[1], members[i])
    reported(tomb(ARGV[1], members[i]))
    expired[#expired + 1] = members[i]
  end
end
settle(KEYS[1], now)
return {out, expired}
`);

const str = (value: unknown): string =>
  typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
const strings = (value: unknown): string[] => (Array.isArray(value) ? value.map(str) : []);
const ms = (value: number): string => String(Math.round(value));
const opt = (value: string | undefined): string => value ?? '';

/** `HGETALL` replies: a flat array (RESP2), or a map / object (RESP3). */
function fieldMap(reply: unknown): Map<string, string> {
  const fields = new Map<string, string>();
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) fields.set(str(reply[i]), str(reply[i + 1]));
  } else if (reply instanceof Map) {
    for (const [field, value] of reply) fields.set(str(field), str(value));
  } else if (typeof reply === 'object' && reply !== null) {
    for (const [field, value] of Object.entries(reply)) fields.set(field, str(value));
  }
  return fields;
}

export class RedisSessionBackend implements SessionBackend {
  readonly #store: RedisStore;
  readonly #keys: KeyLayout;

  constructor(store: RedisStore, keys: KeyLayout) {
    this.#store = store;
    this.#keys = keys;
  }

  async read(ref: SessionRef): Promise<SessionRecord | undefined> {
    const key = this.#keys.session(ref);
    const reply = await this.#store.run(() => this.#store.driver.send(['HGETALL', key], key, false), {
      command: 'HGETALL',
      keys: [key],
    });
    const fields = fieldMap(reply);
    return fields.size === 0 ? undefined : recordFrom(ref, fields);
  }

  async lookup(ref: SessionRef): Promise<Lookup> {
    // Both keys carry the token's hash tag: one slot, one pipeline, one round trip.
    const keys = [this.#keys.session(ref), this.#keys.tombstone(ref)];
    const [session, grave] = await this.#store.run(
      async () =>
        throwFirstError(
          await this.#store.driver.batch(
            keys.map((key) => ['HGETALL', key]),
            keys,
            false,
          ),
        ),
      { command: 'HGETALL', keys },
    );
    const fields = fieldMap(session);
    const record = fields.size === 0 ? undefined : recordFrom(ref, fields);
    if (record !== undefined) return { record };
    return { record: undefined, tombstone: tombstoneFrom(fieldMap(grave)) };
  }

  async create(input: CreateInput): Promise<CreateOutcome> {
    const { user } = input;
    const data: RedisArg[] = [];
    for (const [key, json] of input.data) data.push(DATA_PREFIX + key, json);
    const reply = await this.#store.script(
      CREATE,
      [this.#keys.index(user), this.#keys.epoch(user), this.#keys.session({ tag: user.tag, id: input.id })],
      [
        this.#keys.sessionPrefix(user.tag),
        ms(input.now),
        input.id,
        input.hash,
        input.userId,
        user.uref,
        ms(input.absoluteAt),
        ms(input.expiresAt),
        opt(input.ip),
        opt(input.userAgent),
        input.limit === Infinity ? '0' : String(input.limit),
        input.onLimit === 'reject' ? 'reject' : 'evict',
        input.epoch === undefined ? '' : String(input.epoch),
        ...data,
      ],
    );
    const [status, expired, evicted] = Array.isArray(reply) ? reply : [];
    return {
      status: str(status) as CreateOutcome['status'],
      expired: strings(expired),
      evicted: strings(evicted),
    };
  }

  async touch(input: TouchInput): Promise<TouchOutcome> {
    const reply = await this.#store.script(
      TOUCH,
      [this.#keys.session(input.ref), this.#keys.index(input.user)],
      [
        this.#keys.sessionPrefix(input.ref.tag),
        ms(input.now),
        ms(input.interval),
        ms(input.expiresAt),
        input.ref.id,
        opt(input.ip),
        opt(input.userAgent),
      ],
    );
    const [touched, expired] = Array.isArray(reply) ? reply : [];
    return { touched: Number(touched) === 1, expired: strings(expired) };
  }

  async update(input: UpdateInput): Promise<UpdateOutcome> {
    const pairs: RedisArg[] = [];
    for (const [key, json] of input.set) pairs.push(DATA_PREFIX + key, json);
    const reply = await this.#store.script(
      UPDATE,
      [this.#keys.session(input.ref)],
      [
        String(input.limits.maxBytes),
        String(input.limits.maxKeys),
        input.expectedVersion === undefined ? '' : String(input.expectedVersion),
        String(input.set.size),
        ...pairs,
        ...input.remove.map((k) => DATA_PREFIX + k),
      ],
    );
    const [status, version] = Array.isArray(reply) ? reply : [];
    return { status: str(status) as UpdateOutcome['status'], version: Number(version) };
  }

  async rotate(input: RotateInput): Promise<RotateOutcome> {
    const next = { tag: input.old.tag, id: input.id };
    const reply = await this.#store.script(
      ROTATE,
      [
        this.#keys.session(input.old),
        this.#keys.session(next),
        this.#keys.index(input.user),
        this.#keys.tombstone(input.old),
        this.#keys.tombstone(next),
      ],
      [
        ms(input.now),
        input.old.id,
        input.id,
        input.hash,
        ms(input.expiresAt),
        ms(input.graceUntil),
        opt(input.ip),
        opt(input.userAgent),
      ],
    );
    return str(reply) as RotateOutcome;
  }

  async remove(ref: SessionRef, user: UserRef, now: number): Promise<string[]> {
    const reply = await this.#store.script(
      REMOVE,
      [this.#keys.session(ref), this.#keys.index(user), this.#keys.tombstone(ref)],
      [this.#keys.sessionPrefix(ref.tag), ref.id, ms(now)],
    );
    return strings(reply);
  }

  async expire(ref: SessionRef, user: UserRef, now: number): Promise<boolean> {
    const reply = await this.#store.script(
      EXPIRE,
      [this.#keys.session(ref), this.#keys.index(user), this.#keys.tombstone(ref)],
      [ref.id, ms(now)],
    );
    return Number(reply) === 1;
  }

  async removeAll(
    user: UserRef,
    now: number,
    keep: string | undefined,
    bumpEpoch: boolean,
    epochTtl: number,
  ): Promise<{ revoked: string[]; expired: string[] }> {
    const reply = await this.#store.script(
      REMOVE_ALL,
      [this.#keys.index(user), this.#keys.epoch(user)],
      [this.#keys.sessionPrefix(user.tag), ms(now), keep ?? '', bumpEpoch ? '1' : '0', ms(epochTtl)],
    );
    const [revoked, expired] = Array.isArray(reply) ? reply : [];
    return { revoked: strings(revoked), expired: strings(expired) };
  }

  async list(user: UserRef, now: number): Promise<{ sessions: ListedRecord[]; expired: string[] }> {
    const reply = await this.#store.script(LIST, [this.#keys.index(user)], [this.#keys.sessionPrefix(user.tag), ms(now)]);
    const [rows, expired] = Array.isArray(reply) ? reply : [];
    const sessions: ListedRecord[] = [];
    for (const row of Array.isArray(rows) ? rows : []) {
      const [id, score, c, l, a, ip, ua] = strings(row);
      if (id === undefined) continue;
      sessions.push({
        id,
        expiresAt: Number(score),
        createdAt: Number(c),
        lastSeenAt: Number(l),
        absoluteAt: Number(a),
        ip: ip === '' || ip === undefined ? undefined : ip,
        userAgent: ua === '' || ua === undefined ? undefined : ua,
      });
    }
    return { sessions, expired: strings(expired) };
  }

  async epoch(user: UserRef): Promise<number> {
    const key = this.#keys.epoch(user);
    const reply = await this.#store.run(() => this.#store.driver.send(['GET', key], key, false), { command: 'GET', keys: [key] });
    const value = reply === null || reply === undefined ? 0 : Number(str(reply));
    return Number.isFinite(value) ? value : 0;
  }
}
