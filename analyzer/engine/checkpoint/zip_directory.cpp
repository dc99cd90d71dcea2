#include "zip_directory.h"

namespace decayfw::engine {
namespace {

uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

bool fits(size_t size, uint64_t offset, uint64_t length) { return offset <= size && length <= size - offset; }

constexpr uint32_t kEndSig = 0x06054b50, kZip64LocatorSig = 0x07064b50, kZip64EndSig = 0x06064b50,
                   kEntrySig = 0x02014b50;

// zip64 extra field (id 1): the 8-byte values of the fields that hold 0xFFFFFFFF, in this order.
void read_zip64_sizes(const uint8_t* extra, size_t len, ZipRecord& r, bool uncomp64, bool comp64) {
  for (size_t pos = 0; pos + 4 <= len;) {
    const uint64_t id = le(extra + pos, 2), n = le(extra + pos + 2, 2);
    if (pos + 4 + n > len) return;
    if (id == 1) {
      size_t q = pos + 4;
      if (uncomp64 && q + 8 <= pos + 4 + n) r.uncompressed = le(extra + q, 8), q += 8;
      if (comp64 && q + 8 <= pos + 4 + n) r.compressed = le(extra + q, 8);
      return;
    }
    pos += 4 + n;
  }
}

}  // namespace

bool read_zip_directory(const uint8_t* d, size_t size, std::vector<ZipRecord>& records) {
  records.clear();
  if (size < 22) return false;
  // The end record is the last signature within the final 64 KiB + 22 bytes (its comment is < 64 KiB).
  size_t end = size - 22 + 1;
  const size_t lowest = size > 65557 ? size - 65557 : 0;
  do {
    --end;
    if (le(d + end, 4) == kEndSig) break;
  } while (end > lowest);
  if (le(d + end, 4) != kEndSig) return false;
  uint64_t entries = le(d + end + 10, 2), dir_size = le(d + end + 12, 4), dir_offset = le(d + end + 16, 4);
  if (end >= 20 && le(d + end - 20, 4) == kZip64LocatorSig) {
    const uint64_t z64 = le(d + end - 20 + 8, 8);
    if (!fits(size, z64, 56) || le(d + z64, 4) != kZip64EndSig) return false;
    entries = le(d + z64 + 32, 8);
    dir_size = le(d + z64 + 40, 8);
    dir_offset = le(d + z64 + 48, 8);
  }
  if (!fits(size, dir_offset, dir_size) || entries > dir_size / 46) return false;
  size_t pos = static_cast<size_t>(dir_offset);
  const size_t dir_end = static_cast<size_t>(dir_offset + dir_size);
  for (uint64_t i = 0; i < entries; ++i) {
    if (pos + 46 > dir_end || le(d + pos, 4) != kEntrySig) return false;
    ZipRecord r;
    r.method = static_cast<uint16_t>(le(d + pos + 10, 2));
    r.compressed = le(d + pos + 20, 4);
    r.uncompressed = le(d + pos + 24, 4);
    const size_t name_len = le(d + pos + 28, 2), extra_len = le(d + pos + 30, 2), comment_len = le(d + pos + 32, 2);
    if (pos + 46 + name_len + extra_len + comment_len > dir_end) return false;
    r.name.assign(reinterpret_cast<const char*>(d + pos + 46), name_len);
    read_zip64_sizes(d + pos + 46 + name_len, extra_len, r, r.uncompressed == 0xffffffffu, r.compressed == 0xffffffffu);
    records.push_back(std::move(r));
    pos += 46 + name_len + extra_len + comment_len;
  }
  return true;
}

const ZipRecord* implausible_zip_record(const std::vector<ZipRecord>& records, size_t file_size) {
  for (const auto& r : records) {
    if (r.uncompressed <= file_size) continue;
    // deflate expands at most ~1032:1; anything else this large cannot be in the file
    if (r.method == 8 && r.compressed <= file_size && r.uncompressed / 1032 <= r.compressed + 1) continue;
    return &r;
  }
  return nullptr;
}

}  // namespace decayfw::engine
