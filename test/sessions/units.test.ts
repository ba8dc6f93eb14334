/**
 * Pure parts, no I/O: token format and entropy, cookie settings refused at start-up, the cookie
 * header reader under junk, the CSRF decision table, and the data rules.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError, SessionDataError } from '../../src/errors.js';
import { clearCookie, findCookie, resolveCookie, serializeCookie, MAX_COOKIE_AGE_S } from '../../src/sessions/cookies.js';
import { csrfVerdict, resolveCsrf } from '../../src/sessions/csrf.js';
import { checkKey, decodeData, diffData, encodeData } from '../../src/sessions/data.js';
import { userRef } from '../../src/sessions/keys.js';
import { formatToken, hashSecret, newId, newSecret, parseToken, secretMatches, TOKEN_LENGTH } from '../../src/sessions/token.js';
import { slotOf } from '../../src/stores/slot.js';
import { throwsCode } from './helpers.js';

describe('tokens (C.1, C.2, C.4, C.6)', () => {
  it('C.1: the secret carries 256 random bits and the id 128, both base64url', () => {
    const secret = newSecret();
    expect(Buffer.from(secret, 'base64url')).toHaveLength(32);
    expect(Buffer.from(newId(), 'base64url')).toHaveLength(16);
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('C.1: 10^6 ids and secrets without a collision', () => {
    const ids = new Set<string>();
    const secrets = new Set<string>();
    for (let i = 0; i < 1_000_000; i++) {
      ids.add(newId());
      if (i < 200_000) secrets.add(newSecret());
    }
    expect(ids.size).toBe(1_000_000);
    expect(secrets.size).toBe(200_000);
    // About 10 s on one core; more when other suites share the machine.
  }, 90_000);

  it('C.1: no Math.random anywhere in sessions or adapters', () => {
    for (const dir of ['src/sessions', 'src/adapters']) {
      for (const file of readdirSync(dir)) {
        expect({ file: `${dir}/${file}`, random: /Math\.random/.test(readFileSync(join(dir, file), 'utf8')) }).toEqual({
          file: `${dir}/${file}`,
          random: false,
        });
      }
    }
  });

  it('C.2: a strict, fixed-length format; everything else is refused', () => {
    const token = formatToken('AbC_', newId(), newSecret());
    expect(token).toHaveLength(TOKEN_LENGTH);
    expect(parseToken(token)).toEqual({ tag: 'AbC_', id: token.split('.')[2], secret: token.split('.')[3] });
    const junk = [
      '',
      '*',
      '{}',
      ':',
      '%00',
      'v1',
      token + '.',
      token.replace('v1', 'v2'),
      token.slice(0, -1),
      token + 'A',
      token.replace(/\./g, ':'),
      `${token.slice(0, 10)}*${token.slice(11)}`,
      `${token.slice(0, 10)}{${token.slice(11)}`,
      `${token.slice(0, 10)}\u0430${token.slice(11)}`, // Cyrillic a
      `${token.slice(0, 10)}\u0000${token.slice(11)}`,
      'x'.repeat(8192),
      ['v1', 'AbC_', newId(), newSecret(), 'x'].join('.'),
    ];
    expect(junk.filter((value) => parseToken(value) !== undefined)).toEqual([]);
    expect(parseToken(undefined)).toBeUndefined();
    expect(parseToken(42)).toBeUndefined();
  });

  it('C.3, C.4: only the SHA-256 of the secret is kept, compared in constant time', () => {
    const secret = newSecret();
    const hash = hashSecret(secret);
    expect(hash).not.toContain(secret);
    expect(secretMatches(secret, hash)).toBe(true);
    expect(secretMatches(newSecret(), hash)).toBe(false);
    // A secret differing only in its last character does not match either.
    const flipped = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A');
    expect(secretMatches(flipped, hash)).toBe(false);
    expect(secretMatches(secret, 'not-a-hash')).toBe(false);
    expect(secretMatches(secret, undefined)).toBe(false);
  });

  it('C.6: the user tag is an HMAC: no user id, plain or base64, in the token', () => {
    const userId = 'alice@example.com';
    const { tag } = userRef('s'.repeat(32), userId);
    const token = formatToken(tag, newId(), newSecret());
    for (const form of [userId, Buffer.from(userId).toString('base64'), Buffer.from(userId).toString('base64url'), 'alice']) {
      expect(token).not.toContain(form.slice(0, 8));
    }
    // Another secret, another tag: the tag is not a function of the user id alone.
    const tags = new Set(Array.from({ length: 20 }, (_, i) => userRef(`${i}`.padEnd(32, 'k'), userId).tag));
    expect(tags.size).toBeGreaterThan(1);
  });

  it('cluster layout: every key of a user shares one hash slot', () => {
    const user = userRef('s'.repeat(32), 'bob');
    const keys = [
      `sessions:{${user.tag}}:s:${newId()}`,
      `sessions:{${user.tag}}:u:${user.uref}`,
      `sessions:{${user.tag}}:e:${user.uref}`,
    ];
    expect(new Set(keys.map(slotOf)).size).toBe(1);
  });
});

describe('cookie settings (C.8, C.9, C.10, C.11, C.13)', () => {
  it('C.8: secure defaults', () => {
    const cookie = resolveCookie();
    expect(serializeCookie(cookie, 'TOKEN', 43_200_000)).toBe(
      '__Host-sid=TOKEN; Max-Age=43200; Path=/; HttpOnly; Secure; SameSite=Lax',
    );
    expect(clearCookie(cookie)).toBe('__Host-sid=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax');
  });

  it('C.9: unsafe settings are refused at start-up with InvalidOptionError', () => {
    const bad: Parameters<typeof resolveCookie>[0][] = [
      { domain: 'example.com' }, // __Host- with a Domain
      { path: '/app' }, // __Host- with another path
      { secure: false }, // not Secure outside development
      { name: 'sid', sameSite: 'none', secure: false },
      { name: 'sid;x=y' },
      { name: 'sid\r\nSet-Cookie: x=y' },
      { name: 'a b' },
      { name: 'a=b' },
      { name: '' },
      { name: 'sid', domain: 'example.com; HttpOnly' },
      { name: 'sid', domain: 'example.com\r\nX: y' },
      { name: 'sid', domain: 'a=b.example.com' },
      { name: 'sid', path: '/;x' },
      { name: 'sid', path: 'no-slash' },
      { name: 'sid', path: '/a b' },
      { name: '__Secure-sid', secure: false },
      { sameSite: 'whatever' as 'lax' },
      { priority: 'urgent' as 'high' },
    ];
    expect(bad.filter((options) => !throwsCode(() => resolveCookie(options), 'E_INVALID_OPTION'))).toEqual([]);
    expect(() => resolveCookie({ name: 'a;b' })).toThrow(InvalidOptionError);
  });

  it('C.9: development mode is explicit, drops Secure and the prefix, and is refused in production', () => {
    const cookie = resolveCookie({}, true);
    expect(serializeCookie(cookie, 'T', 1000)).toBe('sid=T; Max-Age=1; Path=/; HttpOnly; SameSite=Lax');
    const env = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    try {
      expect(() => resolveCookie({}, true)).toThrow(InvalidOptionError);
    } finally {
      process.env.NODE_ENV = env;
    }
  });

  it('C.10, C.13: Max-Age is capped at 400 days; the longest cookie fits in 4096 bytes', () => {
    const cookie = resolveCookie({
      name: 'sid',
      domain: 'a'.repeat(256),
      path: '/' + 'p'.repeat(255),
      priority: 'high',
      partitioned: true,
    });
    const token = formatToken('AbCd', newId(), newSecret());
    const line = serializeCookie(cookie, token, 10 * 365 * 86_400_000);
    expect(line).toContain(`Max-Age=${MAX_COOKIE_AGE_S}`);
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(4096);
    expect(serializeCookie(cookie, token, -5)).toContain('Max-Age=0');
  });
});

describe('cookie header reader (C.31, C.32)', () => {
  it('finds the exact name once, counts duplicates, ignores look-alikes', () => {
    expect(findCookie('a=1; __Host-sid=T; b=2', '__Host-sid')).toEqual({ count: 1, value: 'T' });
    expect(findCookie('__Host-sid=A; __Host-sid=B', '__Host-sid')).toEqual({ count: 2, value: 'A' });
    expect(findCookie('sid=X; __host-sid=Y; __Host-sid2=Z; x__Host-sid=W', '__Host-sid').count).toBe(0);
    expect(findCookie('__Host-sid="T"', '__Host-sid').value).toBe('T');
    expect(findCookie(undefined, '__Host-sid').count).toBe(0);
    expect(findCookie(['a=1', '__Host-sid=T'], '__Host-sid').value).toBe('T');
  });

  it('never throws on junk and stays linear (8 KB values, 1000 cookies, bad encodings, NUL)', () => {
    const samples = [
      `__Host-sid=${'x'.repeat(8192)}`,
      Array.from({ length: 1000 }, (_, i) => `c${i}=${'v'.repeat(10)}`).join('; ') + '; __Host-sid=T',
      '__Host-sid=%E0%A4%A',
      '__Host-sid=\u0000\u0000',
      ';;;;===;;; ;=;__Host-sid',
      '='.repeat(20_000),
      ';'.repeat(20_000),
      '\uD800\uDFFF\uFFFE',
    ];
    const started = performance.now();
    for (let i = 0; i < 50; i++) for (const header of samples) findCookie(header, '__Host-sid');
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(findCookie(samples[1], '__Host-sid')).toEqual({ count: 1, value: 'T' });
    expect(findCookie('x'.repeat(200_000) + '; __Host-sid=T', '__Host-sid').count).toBe(0); // past the cap: ignored
  });
});

describe('cookie header fuzz (C.2, C.31)', () => {
  it('20,000 random headers (random characters, near-miss tokens): no throw, inside a time budget; whatever passes the format check is a canonical base64url token', () => {
    const token = formatToken('AbC_', newId(), newSecret());
    const pieces = [
      '__Host-sid',
      '=',
      ';',
      ' ',
      '.',
      '%',
      '"',
      '\u0000',
      '\u0430',
      '\uD800',
      'v1',
      token,
      `; __Host-sid=${token}; `,
      'x'.repeat(300),
    ];
    let seed = 42;
    // A fixed-seed generator (not a CSPRNG: only test input), so a failure replays.
    const next = (n: number) => ((seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) >>> 8) % n;
    const started = performance.now();
    let odd = 0;
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      let header = '';
      const parts = 1 + next(40);
      for (let j = 0; j < parts; j++) {
        header +=
          next(3) === 0
            ? String.fromCharCode(next(0x110))
            : next(5) === 0
              ? `; __Host-sid=${token.slice(0, next(token.length))}${String.fromCharCode(next(128))}${token.slice(next(token.length))}; `
              : pieces[next(pieces.length)]!;
      }
      const found = findCookie(header, '__Host-sid');
      const parsed = found.count === 1 ? parseToken(found.value) : undefined;
      if (parsed === undefined) continue;
      accepted++;
      // Store keys are built from these parts only: each must be plain base64url, the whole canonical.
      const canonical = formatToken(parsed.tag, parsed.id, parsed.secret);
      if (canonical !== found.value || !/^[\w-]+$/.test(parsed.tag + parsed.id + parsed.secret)) odd++;
    }
    expect(odd).toBe(0);
    expect(accepted).toBeGreaterThan(0);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describe('CSRF decision (C.33)', () => {
  const csrf = resolveCsrf({ origins: ['https://app.example.com'] })!;
  const withToken = resolveCsrf({ token: true })!;
  const decide = (c: typeof csrf, fetchSite?: string, origin?: string, referer?: string, scheme: 'https' | 'http' = 'https') =>
    csrfVerdict(c, { fetchSite, origin, referer, host: 'shop.example.com', scheme }).verdict;

  it('Fetch Metadata first, then the Origin allowlist, then (optionally) a token', () => {
    expect(decide(csrf, 'same-origin')).toBe('allow');
    expect(decide(csrf, 'none')).toBe('allow');
    expect(decide(csrf, 'cross-site', 'https://evil.example')).toBe('deny');
    expect(decide(csrf, 'cross-site')).toBe('deny');
    expect(decide(csrf, 'cross-site', 'https://app.example.com')).toBe('allow');
    expect(decide(csrf, 'same-site', 'https://sub.example.com')).toBe('deny');
    expect(decide(resolveCsrf({ allowSameSite: true })!, 'same-site')).toBe('allow');
    expect(decide(csrf, undefined, 'https://shop.example.com')).toBe('allow');
    expect(decide(csrf, undefined, 'https://evil.example')).toBe('deny');
    expect(decide(csrf, undefined, 'null')).toBe('deny');
    expect(decide(withToken, undefined, undefined)).toBe('token');
    expect(decide(withToken, 'cross-site', 'https://evil.example')).toBe('deny');
  });

  it('compares whole origins: scheme, host and port', () => {
    // The cookie is Secure, so the app is https: the http origin of the same host is another origin.
    expect(decide(csrf, undefined, 'http://shop.example.com')).toBe('deny');
    expect(decide(csrf, undefined, 'https://shop.example.com:8443')).toBe('deny');
    expect(decide(csrf, undefined, 'https://shop.example.com:443')).toBe('allow');
    expect(decide(csrf, undefined, 'https://shop.example.com.evil.example')).toBe('deny');
    expect(decide(csrf, undefined, 'http://app.example.com')).toBe('deny');
    // Development mode (no Secure cookie): the app is http.
    expect(decide(csrf, undefined, 'http://shop.example.com', undefined, 'http')).toBe('allow');
    expect(decide(csrf, undefined, 'https://shop.example.com', undefined, 'http')).toBe('deny');
  });

  it('with tokens on, a foreign Origin is still refused: the token is only for clients without origin information', () => {
    expect(decide(withToken, undefined, 'https://evil.example')).toBe('deny');
    expect(decide(withToken, undefined, 'http://shop.example.com')).toBe('deny');
    expect(decide(withToken, undefined, 'https://shop.example.com')).toBe('allow');
  });

  it('without Origin the Referer decides; with neither, the request is refused unless opted in (OWASP)', () => {
    expect(decide(csrf, undefined, undefined, 'https://shop.example.com/cart')).toBe('allow');
    expect(decide(csrf, undefined, undefined, 'https://app.example.com/x')).toBe('allow');
    expect(decide(csrf, undefined, undefined, 'https://evil.example/shop.example.com')).toBe('deny');
    expect(decide(csrf, undefined, undefined, 'http://shop.example.com/cart')).toBe('deny');
    expect(decide(csrf, undefined, undefined, 'not a url')).toBe('deny');
    expect(decide(csrf, undefined, undefined)).toBe('deny');
    expect(decide(resolveCsrf({ allowMissingOrigin: true })!, undefined, undefined)).toBe('allow');
    expect(decide(resolveCsrf({ allowMissingOrigin: true, token: true })!, undefined, undefined)).toBe('token');
    expect(decide(resolveCsrf({ allowMissingOrigin: true })!, undefined, 'https://evil.example')).toBe('deny');
  });

  it('refuses malformed allowlist entries at start-up', () => {
    const bad = [['not a url'], ['https://a.example/path'], ['https://a.example?x']];
    expect(bad.filter((origins) => !throwsCode(() => resolveCsrf({ origins }), 'E_INVALID_OPTION'))).toEqual([]);
    expect(() => resolveCsrf({ token: { header: 'x bad' } })).toThrow(InvalidOptionError);
    expect(() => resolveCsrf({ allowMissingOrigin: 'yes' as unknown as boolean })).toThrow(InvalidOptionError);
  });
});

describe('data rules (C.28, C.29)', () => {
  const limits = { maxBytes: 100, maxKeys: 3 };

  it('rejects prototype-polluting keys at any depth, non-JSON values and non-objects', () => {
    const polluted = [
      JSON.parse('{"__proto__": {"isAdmin": true}}'),
      { a: JSON.parse('{"__proto__": {"isAdmin": true}}') },
      { a: [{ constructor: { prototype: { x: 1 } } }] },
      { prototype: 1 },
    ];
    for (const data of polluted) expect(() => encodeData(data, limits)).toThrow(SessionDataError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encodeData({ a: cyclic }, { maxBytes: 1e6, maxKeys: 10 })).toThrow(SessionDataError);
    expect(() => encodeData({ a: 1n }, limits)).toThrow(SessionDataError);
    expect(() => encodeData({ a: () => 1 }, limits)).toThrow(SessionDataError);
    expect(() => encodeData([1], limits)).toThrow(SessionDataError);
    expect(() => encodeData(new Date(), limits)).toThrow(SessionDataError);
    expect(() => checkKey('')).toThrow(SessionDataError);
    expect(({} as { isAdmin?: boolean }).isAdmin).toBeUndefined();
  });

  it('enforces byte and key limits', () => {
    expect(() => encodeData({ a: 'x'.repeat(200) }, limits)).toThrow(/bytes/);
    expect(() => encodeData({ a: 1, b: 2, c: 3, d: 4 }, limits)).toThrow(/keys/);
    expect(encodeData({ a: 1, b: undefined }, limits)).toEqual(new Map([['a', '1']]));
  });

  it('reads planted data without polluting, and diffs only changed keys', () => {
    const data = decodeData(
      new Map([
        ['a', '{"__proto__":{"polluted":true},"ok":1}'],
        ['__proto__', '{"x":1}'],
        ['bad', '{'],
      ]),
    );
    expect(data).toEqual({ a: { ok: 1 } });
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
    const diff = diffData(
      new Map([
        ['a', '1'],
        ['b', '2'],
        ['c', '3'],
      ]),
      new Map([
        ['a', '1'],
        ['b', '5'],
        ['d', '4'],
      ]),
    );
    expect(diff).toEqual({
      set: new Map([
        ['b', '5'],
        ['d', '4'],
      ]),
      remove: ['c'],
    });
  });
});
