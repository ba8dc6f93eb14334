/**
 * Password hashes with scrypt (node:crypto, no dependency), stored as
 * `scrypt$<log2 N>$<r>$<p>$<salt>$<hash>` so the parameters travel with each hash.
 *
 * The demo uses N = 2^14, r = 8, p = 1 (16 MiB, about 50 ms per hash on a small VM) to keep
 * logins quick under `npm run load`; OWASP's current minimum for scrypt is N = 2^17. Raise it for
 * anything real: old hashes keep verifying because they carry their own parameters.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const LOG_N = 14;
const R = 8;
const P = 1;
const KEY_LENGTH = 32;

function scrypt(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(password, salt, KEY_LENGTH, { ...options, maxmem: 256 * options.N! * options.r! }, (error, key) =>
      error === null ? resolve(key) : reject(error),
    );
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, { N: 2 ** LOG_N, r: R, p: P });
  return ['scrypt', LOG_N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

const FORMAT = /^scrypt\$(\d{1,2})\$(\d{1,2})\$(\d{1,2})\$([\w-]{16,})\$([\w-]{16,})$/;

/** Whether `password` matches `stored`, in constant time; `false` for a malformed hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const match = FORMAT.exec(stored);
  if (match === null) return false;
  const [, logN, r, p, salt, hash] = match;
  const expected = Buffer.from(hash!, 'base64url');
  if (expected.length !== KEY_LENGTH || Number(logN) > 20) return false;
  const key = await scrypt(password, Buffer.from(salt!, 'base64url'), { N: 2 ** Number(logN), r: Number(r), p: Number(p) });
  return timingSafeEqual(key, expected);
}

let dummy: Promise<string> | undefined;

/**
 * A hash to check against when the email is unknown, so an unknown email costs as much as a
 * wrong password and response times do not reveal which emails have accounts.
 */
export function dummyHash(): Promise<string> {
  dummy ??= hashPassword(randomBytes(16).toString('hex'));
  return dummy;
}
