/**
 * Sessions in this process, for `memoryStore()`: the same records, tombstones, index, epochs and
 * rules as the Redis scripts (guarded writes, pruning, limits, grace), with expiry checked against the
 * `now` each call carries. Operations run synchronously inside one call, so they are atomic
 * the way the scripts are. Expired entries are dropped on access and by an amortized sweep, so
 * memory stays bounded by live sessions.
 *
 * State is kept per `MemoryStore` instance: two managers over the same `memoryStore()` share
 * their sessions, as two managers over the same Redis do.
 *
 * @module
 */
import type { MemoryStore } from '../stores/memory.js';
import { KeyLayout, type SessionRef, type UserRef } from './keys.js';
import {
  DATA_PREFIX,
  recordFrom,
  type CreateInput,
  type CreateOutcome,
  type EndedBy,
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

interface Entry {
  readonly fields: Map<string, string>;
  expiresAt: number;
}

interface Grave {
  readonly hash: string;
  readonly userId: string;
  readonly uref: string;
  readonly expiresAt: number;
  reported: boolean;
  ended: EndedBy | undefined;
}

interface State {
  readonly sessions: Map<string, Entry>;
  readonly tombstones: Map<string, Grave>;
  readonly indexes: Map<string, Map<string, number>>;
  readonly epochs: Map<string, { value: number; expiresAt: number }>;
  writesSinceSweep: number;
}

const states = new WeakMap<MemoryStore, State>();

const bytes = (text: string): number => Buffer.byteLength(text, 'utf8');

function maxScore(index: ReadonlyMap<string, number>): number {
  let max = -Infinity;
  for (const score of index.values()) if (score > max) max = score;
  return max;
}

export class MemorySessionBackend implements SessionBackend {
  readonly #state: State;
  readonly #keys: KeyLayout;

  constructor(store: MemoryStore, keys: KeyLayout) {
    let state = states.get(store);
    if (state === undefined) {
      state = { sessions: new Map(), tombstones: new Map(), indexes: new Map(), epochs: new Map(), writesSinceSweep: 0 };
      states.set(store, state);
    }
    this.#state = state;
    this.#keys = keys;
  }

  /**
   * The entry while it is live. An expired entry is not returned but not deleted either: like a
   * Redis key whose TTL is a little behind the policy, it stays until `expire()`, a prune or the
   * sweep removes it, so the expiry is reported once, by whoever finds it.
   */
  #entry(key: string, now: number): Entry | undefined {
    const entry = this.#state.sessions.get(key);
    return entry === undefined || entry.expiresAt <= now ? undefined : entry;
  }

  #grave(ref: SessionRef, now: number): Grave | undefined {
    const grave = this.#state.tombstones.get(this.#keys.tombstone(ref));
    return grave === undefined || grave.expiresAt <= now ? undefined : grave;
  }

  /** Marks the tombstone of a session revoked or rotated away (it keeps its deadline). */
  #end(ref: SessionRef, kind: EndedBy, now: number): void {
    const grave = this.#grave(ref, now);
    if (grave !== undefined) grave.ended = kind;
  }

  /** Deletes the session; `true` if it was there and live (as Redis's `DEL` of a key with a TTL). */
  #delete(ref: SessionRef, now: number): boolean {
    const key = this.#keys.session(ref);
    const live = this.#entry(key, now) !== undefined;
    return this.#state.sessions.delete(key) && live;
  }

  /** Marks the tombstone reported; `true` if this call did. */
  #report(ref: SessionRef, now: number): boolean {
    const grave = this.#grave(ref, now);
    if (grave === undefined || grave.reported) return false;
    grave.reported = true;
    return true;
  }

  #index(user: UserRef, create: boolean): Map<string, number> | undefined {
    const key = this.#keys.index(user);
    let index = this.#state.indexes.get(key);
    if (index === undefined && create) {
      index = new Map();
      this.#state.indexes.set(key, index);
    }
    return index;
  }

  #settle(user: UserRef): void {
    const key = this.#keys.index(user);
    if (this.#state.indexes.get(key)?.size === 0) this.#state.indexes.delete(key);
  }

  #prune(user: UserRef, index: Map<string, number>, now: number): string[] {
    const gone: string[] = [];
    for (const [id, score] of index) {
      if (score <= now) {
        index.delete(id);
        this.#state.sessions.delete(this.#keys.session({ tag: user.tag, id }));
        this.#report({ tag: user.tag, id }, now);
        gone.push(id);
      }
    }
    return gone;
  }

  /** Drops expired entries once the writes since the last sweep outnumber the live entries. */
  #maybeSweep(now: number): void {
    const state = this.#state;
    if (++state.writesSinceSweep < Math.max(1_000, state.sessions.size + state.tombstones.size)) return;
    state.writesSinceSweep = 0;
    for (const [key, entry] of state.sessions) if (entry.expiresAt <= now) state.sessions.delete(key);
    for (const [key, grave] of state.tombstones) if (grave.expiresAt <= now) state.tombstones.delete(key);
    for (const [key, index] of state.indexes) {
      if (index.size === 0 || maxScore(index) <= now) state.indexes.delete(key);
    }
    for (const [key, epoch] of state.epochs) if (epoch.expiresAt <= now) state.epochs.delete(key);
  }

  async read(ref: SessionRef): Promise<SessionRecord | undefined> {
    const entry = this.#state.sessions.get(this.#keys.session(ref));
    return entry === undefined ? undefined : recordFrom(ref, new Map(entry.fields));
  }

  async lookup(ref: SessionRef, now: number): Promise<Lookup> {
    const record = await this.read(ref);
    if (record !== undefined) return { record };
    const grave = this.#grave(ref, now);
    return {
      record: undefined,
      tombstone:
        grave === undefined
          ? undefined
          : { hash: grave.hash, userId: grave.userId, uref: grave.uref, reported: grave.reported, ended: grave.ended },
    };
  }

  async create(input: CreateInput): Promise<CreateOutcome> {
    const { user, now } = input;
    this.#maybeSweep(now);
    if (input.epoch !== undefined && this.#epoch(user, now) !== input.epoch) {
      return { status: 'epoch', expired: [], evicted: [] };
    }
    const key = this.#keys.session({ tag: user.tag, id: input.id });
    if (this.#entry(key, now) !== undefined) return { status: 'collision', expired: [], evicted: [] };
    const index = this.#index(user, true)!;
    const expired = this.#prune(user, index, now);
    const evicted: string[] = [];
    if (input.limit !== Infinity && index.size >= input.limit) {
      const aged: [string, number][] = [];
      for (const id of [...index.keys()]) {
        const entry = this.#entry(this.#keys.session({ tag: user.tag, id }), now);
        if (entry === undefined) {
          index.delete(id);
          this.#state.sessions.delete(this.#keys.session({ tag: user.tag, id }));
          this.#report({ tag: user.tag, id }, now);
          expired.push(id);
        } else aged.push([id, Number(entry.fields.get('c'))]);
      }
      if (aged.length >= input.limit) {
        if (input.onLimit === 'reject') {
          this.#settle(user);
          return { status: 'limit', expired, evicted };
        }
        aged.sort((x, y) => (x[1] === y[1] ? (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0) : x[1] - y[1]));
        for (const [id] of aged.slice(0, aged.length - input.limit + 1)) {
          this.#state.sessions.delete(this.#keys.session({ tag: user.tag, id }));
          this.#end({ tag: user.tag, id }, 'revoked', now);
          index.delete(id);
          evicted.push(id);
        }
      }
    }
    const fields = new Map<string, string>([
      ['h', input.hash],
      ['u', input.userId],
      ['x', user.uref],
      ['c', String(now)],
      ['l', String(now)],
      ['a', String(input.absoluteAt)],
    ]);
    if (input.ip !== undefined && input.ip !== '') fields.set('ip', input.ip);
    if (input.userAgent !== undefined && input.userAgent !== '') fields.set('ua', input.userAgent);
    for (const [k, json] of input.data) fields.set(DATA_PREFIX + k, json);
    this.#state.sessions.set(key, { fields, expiresAt: Math.max(now + 1, input.expiresAt) });
    this.#state.tombstones.set(this.#keys.tombstone({ tag: user.tag, id: input.id }), {
      hash: input.hash,
      userId: input.userId,
      uref: user.uref,
      expiresAt: Math.max(now + 1, input.absoluteAt),
      reported: false,
      ended: undefined,
    });
    index.set(input.id, input.expiresAt);
    return { status: 'ok', expired, evicted };
  }

  async touch(input: TouchInput): Promise<TouchOutcome> {
    const { now } = input;
    const entry = this.#entry(this.#keys.session(input.ref), now);
    if (entry === undefined || entry.fields.has('n')) return { touched: false, expired: [] };
    if (now - Number(entry.fields.get('l')) < input.interval) return { touched: false, expired: [] };
    const expiresAt = Math.min(input.expiresAt, Number(entry.fields.get('a')));
    if (!(expiresAt > now)) return { touched: false, expired: [] };
    entry.fields.set('l', String(now));
    if (input.ip !== undefined && input.ip !== '') entry.fields.set('ip', input.ip);
    if (input.userAgent !== undefined && input.userAgent !== '') entry.fields.set('ua', input.userAgent);
    entry.expiresAt = expiresAt;
    const index = this.#index(input.user, true)!;
    const expired = this.#prune(input.user, index, now);
    index.set(input.ref.id, expiresAt);
    return { touched: true, expired };
  }

  async update(input: UpdateInput): Promise<UpdateOutcome> {
    const { set, remove, limits } = input;
    const entry = this.#entry(this.#keys.session(input.ref), input.now);
    if (entry === undefined) return { status: 'gone', version: 0 };
    if (entry.fields.has('n')) return { status: 'rotated', version: 0 };
    const version = Number(entry.fields.get('v') ?? '0');
    if (input.expectedVersion !== undefined && input.expectedVersion !== version) return { status: 'conflict', version };
    const sizes = new Map<string, number>();
    for (const [field, value] of entry.fields) {
      if (field.startsWith(DATA_PREFIX)) sizes.set(field, bytes(field) - DATA_PREFIX.length + bytes(value));
    }
    for (const [k, json] of set) sizes.set(DATA_PREFIX + k, bytes(k) + bytes(json));
    for (const k of remove) sizes.delete(DATA_PREFIX + k);
    let total = 0;
    for (const size of sizes.values()) total += size;
    if (total > limits.maxBytes || sizes.size > limits.maxKeys) return { status: 'too-large', version };
    for (const [k, json] of set) entry.fields.set(DATA_PREFIX + k, json);
    for (const k of remove) entry.fields.delete(DATA_PREFIX + k);
    entry.fields.set('v', String(version + 1));
    return { status: 'ok', version: version + 1 };
  }

  async rotate(input: RotateInput): Promise<RotateOutcome> {
    const { now } = input;
    const oldKey = this.#keys.session(input.old);
    const old = this.#entry(oldKey, now);
    if (old === undefined) return 'gone';
    if (old.fields.has('n')) return 'rotated';
    const newKey = this.#keys.session({ tag: input.old.tag, id: input.id });
    if (this.#entry(newKey, now) !== undefined) return 'collision';
    const expiresAt = Math.min(input.expiresAt, Number(old.fields.get('a')));
    if (!(expiresAt > now)) return 'gone';
    const fields = new Map(old.fields);
    fields.set('h', input.hash);
    fields.set('l', String(now));
    if (input.ip !== undefined && input.ip !== '') fields.set('ip', input.ip);
    if (input.userAgent !== undefined && input.userAgent !== '') fields.set('ua', input.userAgent);
    this.#state.sessions.set(newKey, { fields, expiresAt });
    this.#end(input.old, 'rotated', now);
    this.#state.tombstones.set(this.#keys.tombstone({ tag: input.old.tag, id: input.id }), {
      hash: input.hash,
      userId: fields.get('u') ?? '',
      uref: fields.get('x') ?? '',
      expiresAt: Math.max(now + 1, Number(fields.get('a'))),
      reported: false,
      ended: undefined,
    });
    const index = this.#index(input.user, true)!;
    index.delete(input.old.id);
    index.set(input.id, expiresAt);
    if (input.graceUntil > now) {
      old.fields.set('n', input.id);
      old.fields.set('g', String(input.graceUntil));
      old.expiresAt = Math.min(old.expiresAt, input.graceUntil);
    } else {
      this.#state.sessions.delete(oldKey);
    }
    return 'ok';
  }

  async remove(ref: SessionRef, user: UserRef, now: number): Promise<string[]> {
    const removed: string[] = [];
    const successor = this.#entry(this.#keys.session(ref), now)?.fields.get('n');
    if (this.#delete(ref, now)) {
      removed.push(ref.id);
      this.#end(ref, 'revoked', now);
    }
    const index = this.#index(user, false);
    index?.delete(ref.id);
    if (successor !== undefined) {
      const next = { tag: ref.tag, id: successor };
      if (this.#delete(next, now)) {
        removed.push(successor);
        this.#end(next, 'revoked', now);
      }
      index?.delete(successor);
    }
    this.#settle(user);
    return removed;
  }

  async expire(ref: SessionRef, user: UserRef, now: number): Promise<boolean> {
    const deleted = this.#state.sessions.delete(this.#keys.session(ref));
    const unindexed = this.#index(user, false)?.delete(ref.id) ?? false;
    this.#settle(user);
    if (this.#grave(ref, now) !== undefined) return this.#report(ref, now);
    return deleted || unindexed;
  }

  async removeAll(
    user: UserRef,
    now: number,
    keep: string | undefined,
    bumpEpoch: boolean,
    epochTtl: number,
  ): Promise<{ revoked: string[]; expired: string[] }> {
    const revoked: string[] = [];
    const expired: string[] = [];
    const index = this.#index(user, false);
    if (index !== undefined) {
      for (const [id, score] of [...index]) {
        if (id === keep) continue;
        this.#state.sessions.delete(this.#keys.session({ tag: user.tag, id }));
        index.delete(id);
        if (score <= now) {
          this.#report({ tag: user.tag, id }, now);
          expired.push(id);
        } else {
          this.#end({ tag: user.tag, id }, 'revoked', now);
          revoked.push(id);
        }
      }
    }
    if (bumpEpoch) {
      const key = this.#keys.epoch(user);
      const value = this.#epoch(user, now) + 1;
      this.#state.epochs.set(key, { value, expiresAt: now + epochTtl });
    }
    this.#settle(user);
    return { revoked, expired };
  }

  async list(user: UserRef, now: number): Promise<{ sessions: ListedRecord[]; expired: string[] }> {
    const index = this.#index(user, false);
    if (index === undefined) return { sessions: [], expired: [] };
    const expired = this.#prune(user, index, now);
    const sessions: ListedRecord[] = [];
    for (const [id, score] of [...index].sort((x, y) => x[1] - y[1] || (x[0] < y[0] ? -1 : 1))) {
      const entry = this.#entry(this.#keys.session({ tag: user.tag, id }), now);
      if (entry === undefined) {
        index.delete(id);
        this.#state.sessions.delete(this.#keys.session({ tag: user.tag, id }));
        this.#report({ tag: user.tag, id }, now);
        expired.push(id);
        continue;
      }
      sessions.push({
        id,
        expiresAt: score,
        createdAt: Number(entry.fields.get('c')),
        lastSeenAt: Number(entry.fields.get('l')),
        absoluteAt: Number(entry.fields.get('a')),
        ip: entry.fields.get('ip'),
        userAgent: entry.fields.get('ua'),
      });
    }
    this.#settle(user);
    return { sessions, expired };
  }

  async epoch(user: UserRef, now: number): Promise<number> {
    return this.#epoch(user, now);
  }

  // Synchronous: an operation must not yield between its check and its write.
  #epoch(user: UserRef, now: number): number {
    const key = this.#keys.epoch(user);
    const epoch = this.#state.epochs.get(key);
    if (epoch === undefined) return 0;
    if (epoch.expiresAt <= now) {
      this.#state.epochs.delete(key);
      return 0;
    }
    return epoch.value;
  }
}
