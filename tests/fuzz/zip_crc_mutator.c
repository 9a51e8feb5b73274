/* A libFuzzer custom mutator for the targets whose inputs are .npz
 * archives read for their meaning (data sets, checkpoints): libFuzzer's own
 * mutation, then every member's CRC-32 in the central directory and its
 * local header is set to match the member's data. Without it nearly every
 * change to a member's values would be refused by the archive's CRC check
 * (fuzz_npz tests that check) before the schema checks behind it ever ran.
 * Linked only into the libFuzzer build; the inputs it makes are ordinary
 * archives, replayed as they are. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

enum {
  END_SIZE = 22,
  CENTRAL_SIZE = 46,
  LOCAL_SIZE = 30,
  MAX_INFLATED = 1 << 24, /* a member's CRC is left alone beyond this */
};

static uint32_t rd16(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t rd32(const uint8_t *p) {
  return rd16(p) | rd16(p + 2) << 16;
}
static void wr32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}

/* The CRC-32 of a raw deflate stream's output, if it inflates cleanly. */
static bool inflated_crc(const uint8_t *in, size_t n, uint32_t *crc) {
  z_stream zs = {0};
  if (inflateInit2(&zs, -15) != Z_OK) return false;
  static uint8_t out[1 << 16];
  zs.next_in = (uint8_t *)in;
  zs.avail_in = (uInt)n;
  uLong c = crc32(0, NULL, 0), total = 0;
  int ret = Z_OK;
  while (ret == Z_OK && total < MAX_INFLATED) {
    zs.next_out = out;
    zs.avail_out = sizeof out;
    ret = inflate(&zs, Z_NO_FLUSH);
    size_t got = sizeof out - zs.avail_out;
    c = crc32(c, out, (uInt)got);
    total += got;
    if (ret == Z_OK && got == 0) break; /* input used up */
  }
  inflateEnd(&zs);
  *crc = (uint32_t)c;
  return ret == Z_STREAM_END;
}

/* The end-of-directory record: searched backwards over a possible comment. */
static const uint8_t *find_end(const uint8_t *data, size_t size) {
  if (size < END_SIZE) return NULL;
  size_t lowest = size - END_SIZE > 0xFFFF ? size - END_SIZE - 0xFFFF : 0;
  for (size_t i = size - END_SIZE + 1; i-- > lowest;)
    if (rd32(data + i) == 0x06054b50) return data + i;
  return NULL;
}

/* Sets the CRC of the member whose central entry is at c; false when the
 * entry does not lead to a member (the walk stops there). */
static bool fix_member(uint8_t *data, size_t size, uint8_t *c) {
  size_t local = rd32(c + 42), comp = rd32(c + 20);
  if (local > size || size - local < LOCAL_SIZE || rd32(data + local) != 0x04034b50) return false;
  size_t start = local + LOCAL_SIZE + rd16(data + local + 26) + rd16(data + local + 28);
  if (start > size || size - start < comp) return false;
  uint32_t crc = 0, method = rd16(c + 10);
  if (method == 0)
    crc = (uint32_t)crc32(0, data + start, (uInt)comp);
  else if (method != 8 || !inflated_crc(data + start, comp, &crc))
    return true;
  wr32(c + 16, crc);
  wr32(data + local + 14, crc);
  return true;
}

static void fix_crcs(uint8_t *data, size_t size) {
  const uint8_t *end = find_end(data, size);
  if (!end) return;
  size_t pos = rd32(end + 16), count = rd16(end + 10);
  for (size_t i = 0; i < count; i++) {
    if (pos > size || size - pos < CENTRAL_SIZE || rd32(data + pos) != 0x02014b50) return;
    uint8_t *c = data + pos;
    if (!fix_member(data, size, c)) return;
    pos += CENTRAL_SIZE + rd16(c + 28) + rd16(c + 30) + rd16(c + 32);
  }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
  size = LLVMFuzzerMutate(data, size, max_size);
  /* one mutation in 16 keeps its CRCs, so the targets meet mismatches too */
  if (seed % 16 != 0) fix_crcs(data, size);
  return size;
}
