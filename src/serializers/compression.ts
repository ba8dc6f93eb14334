import { brotliCompressSync, brotliDecompressSync, constants, gunzipSync, gzipSync } from 'node:zlib';
import { InvalidOptionError } from '../errors.js';
import { checkCount } from '../core/durations.js';
import { checkOptionNames, optionNames } from '../core/option-names.js';

/** Compresses payload bytes. Larder records `name` in each entry it compressed. */
export interface Compressor {
  /** Stable identifier, 1-16 characters from `[A-Za-z0-9_.-]`. */
  readonly name: string;
  compress(bytes: Uint8Array): Uint8Array;
  decompress(bytes: Uint8Array): Uint8Array;
}

export interface CompressionOptions {
  /**
   * Payloads of at least this many bytes are compressed; smaller ones are stored as they are
   * (compressing them costs more CPU than the bytes it saves).
   * @default 1024
   */
  threshold?: number;
  /**
   * `'gzip'` (zlib level 1: fast, about 3x on JSON), `'brotli'` (quality 4: smaller, slower),
   * or your own {@link Compressor}.
   * @default 'gzip'
   */
  algorithm?: 'gzip' | 'brotli' | Compressor;
}

export const gzip: Compressor = Object.freeze({
  name: 'gzip',
  compress: (bytes: Uint8Array) => gzipSync(bytes, { level: 1 }),
  decompress: (bytes: Uint8Array) => gunzipSync(bytes),
});

export const brotli: Compressor = Object.freeze({
  name: 'brotli',
  compress: (bytes: Uint8Array) => brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } }),
  decompress: (bytes: Uint8Array) => brotliDecompressSync(bytes),
});

export interface ResolvedCompression {
  readonly threshold: number;
  readonly compressor: Compressor;
}

const COMPRESSION_OPTION_NAMES = optionNames<CompressionOptions>({ threshold: true, algorithm: true });

export function resolveCompression(options: CompressionOptions | false | undefined): ResolvedCompression | undefined {
  if (options === undefined || options === false) return undefined;
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('compression', 'expected an options object or false');
  checkOptionNames(options, COMPRESSION_OPTION_NAMES, 'compression');
  const threshold = options.threshold === undefined ? 1024 : checkCount('compression.threshold', options.threshold, { min: 0 });
  const algorithm = options.algorithm ?? 'gzip';
  const compressor = algorithm === 'gzip' ? gzip : algorithm === 'brotli' ? brotli : algorithm;
  if (typeof compressor !== 'object' || !/^[A-Za-z0-9_.-]{1,16}$/.test(compressor.name)) {
    throw new InvalidOptionError('compression.algorithm', "expected 'gzip', 'brotli' or a Compressor with a valid name");
  }
  return { threshold, compressor };
}
