/**
 * Redis Cluster hash slots: CRC16-XMODEM of the key (or of its `{hash tag}`) modulo 16384.
 * Used to split multi-key commands into one command per slot.
 */

const TABLE = new Uint16Array(256);
for (let i = 0; i < 256; i++) {
  let crc = i << 8;
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  TABLE[i] = crc;
}

/** The cluster slot of `key`, honouring `{hash tags}` as Redis does. */
export function slotOf(key: string): number {
  let hashed = key;
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    // An empty tag `{}` does not count: the whole key is hashed.
    if (close > open + 1) hashed = key.slice(open + 1, close);
  }
  const bytes = Buffer.from(hashed, 'utf8');
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc & 16383;
}

/** Groups positions of `keys` by slot, keeping each group in the original order. */
export function groupBySlot(keys: readonly string[]): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  keys.forEach((key, index) => {
    const slot = slotOf(key);
    const group = groups.get(slot);
    if (group === undefined) groups.set(slot, [index]);
    else group.push(index);
  });
  return groups;
}
